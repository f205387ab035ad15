"""Embedding, metered: an upload's chunks, a search's query, and OpenAI's ``/v1/embeddings``."""
from __future__ import annotations

import base64
import struct

import orjson

from flask import Response, g

from agent_portal import PortalError
from agent_portal.metering import MeteredCall

from .settings import state_of



def embedding_call(portal, actor, text: str, request_id: str,
                   estimated_prompt_tokens: int | None = None) -> MeteredCall:
    """Return the metered call of embedding ``text`` (or, for an upload not yet parsed, text of
    about ``estimated_prompt_tokens``) with the configured embedder."""
    state = state_of(portal)
    model = state.settings.embedder["model"]
    return MeteredCall(portal, actor, model=model, backend=state.backend, upstream_model=model, stream=False,
                       request_id=request_id, prompt_text=text, prices=(state.settings.embedding_price, None),
                       reserve_completion_tokens=0, estimated_prompt_tokens=estimated_prompt_tokens)


def metered_embedding(portal, actor, text: str, request_id: str, work) -> tuple:
    """Return ``work()`` (an embedding of ``text``, or a search that embeds it) and its call,
    admitted first and recorded after, a failure included."""
    call = embedding_call(portal, actor, text, request_id)
    call.admit()
    try:
        result = work()
    except PortalError as failure:
        call.end(failure.code or "upstream_error", failure.status, failure.message)
        raise
    call.end("ok", 200)
    return result, call


def embed_metered(portal, actor, texts: list[str], request_id: str) -> tuple[list, MeteredCall]:
    """Return the unit vectors of ``texts`` and their call, admitted first and recorded after."""
    return metered_embedding(portal, actor, "\n".join(texts), request_id, lambda: state_of(portal).worker.embed(texts))


def _base64(vector: list[float]) -> str:
    """Return ``vector`` as OpenAI's base64 encoding: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def answers_to(served: str, asked) -> bool:
    """Return True when ``asked`` names the embedding model served here: its own name, or that
    name under an organisation (``sentence-transformers/all-MiniLM-L6-v2``, as Open WebUI's RAG
    settings name it by default)."""
    return isinstance(asked, str) and (asked == served or asked.rsplit("/", 1)[-1] == served)


def embeddings_view(portal):
    """OpenAI's ``POST /v1/embeddings`` with the portal's embedder, metered."""
    state, actor, body = state_of(portal), g.actor, g.json_body  # checked against schemas.EMBEDDINGS
    served = state.settings.embedder["model"]
    model = body.get("model", served)
    if not answers_to(served, model):
        raise PortalError(f"The embedding model here is {served}.", status=404,
                          code="model_not_found", type="invalid_request_error")
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    encoding = body.get("encoding_format", "float")
    vectors, call = embed_metered(portal, actor, texts, g.request_id)
    tokens = call.record.prompt_tokens
    # orjson: thousands of vectors are encoded in milliseconds, not held on the loop for long
    return Response(orjson.dumps({"object": "list", "model": model,
                                  "data": [{"object": "embedding", "index": i,
                                            "embedding": _base64(v) if encoding == "base64" else v}
                                           for i, v in enumerate(vectors)],
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
                    status=200, mimetype="application/json")
