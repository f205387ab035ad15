"""Search and answers with citations.

Retrieval always filters by the collections the caller may read inside the store's query.
An answer is the configured chat model's, given the top hits as numbered sources and told to
cite them as [1], [2]; the list of sources follows the answer. An ask is admitted once, before
its search, and is one ledger record: the query's embedding and the answer together. A search
is one record too: its query's embedding.
"""
from __future__ import annotations

import json
import math
import re
import time

from flask import Response, g

from agent_portal import PortalError
from agent_portal.adapter import OpenAIStreamAdapter
from agent_portal.metering import MeteredCall, stream_status
from agent_portal.sse import STREAM_HEADERS, StreamState, relay, sse_event
from agent_portal.upstream import UpstreamFailure

from .collections import readable_collection
from .embedding import metered_embedding
from .settings import state_of

INSTRUCTIONS = ("Answer the question using only the numbered sources below. Cite the sources you use "
                "as [1], [2] right after the sentence that uses them. If the sources do not hold the "
                "answer, say so.\n\n")



def hit_view(hit, number: int | None = None) -> dict:
    view = {"text": hit.text, "score": round(hit.score, 4), "file_id": hit.file_id, "file_name": hit.file_name,
            "collection_id": hit.collection_id, "page": hit.page, "heading": hit.heading, "chunk": hit.chunk_index}
    if number is not None:
        view = {"number": number, **view}
    return view


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")


def as_text(value: str) -> str:
    """Return ``value`` with every character markdown or HTML would act on escaped: a file name
    or heading (a user's words) shown as text in a rendered answer, never as a link or a tag."""
    return _MARKDOWN.sub(r"\\\1", value)


def where(hit) -> str:
    parts = [as_text(hit.file_name)]
    if hit.page is not None:
        parts.append(f"page {hit.page}")
    if hit.heading:
        parts.append(f"“{as_text(hit.heading)}”")
    return ", ".join(parts)


def citations(hits) -> str:
    """Return the sources list that follows an answer."""
    if not hits:
        return ""
    return "\n\nSources:\n" + "\n".join(f"[{n}] {where(hit)}" for n, hit in enumerate(hits, 1))


def grounded_messages(hits, messages: list) -> list:
    """Return ``messages`` with a system message holding the numbered sources first."""
    sources = "\n\n".join(f"[{n}] ({where(hit)})\n{hit.text}" for n, hit in enumerate(hits, 1))
    return [{"role": "system", "content": INSTRUCTIONS + (sources or "(no sources found)")}, *messages]


def search_collections(portal, query: str, collection_ids: list[str], k: int):
    """Return the ``k`` best chunks for ``query`` among ``collection_ids`` (none of a file
    deleted since: its chunks go by a job). The host's job worker embeds and searches; the
    caller meters the query's embedding."""
    state = state_of(portal)
    hits = state.worker.search(query, k, collection_ids)
    present = state.catalog.present_files({hit.file_id for hit in hits})
    return [hit for hit in hits if hit.file_id in present]


def retrieve(portal, actor, query: str, collection_ids: list[str], k: int, request_id: str):
    """Return :func:`search_collections`' hits, the query's embedding metered as a call of its
    own (admitted, recorded): a search."""
    hits, _call = metered_embedding(portal, actor, query, request_id,
                                    lambda: search_collections(portal, query, collection_ids, k))
    return hits


def ask_estimate(settings, question: str, k: int) -> int:
    """Return the prompt tokens an ask may use before its sources are known: the question
    twice (embedded, then asked) and ``k`` sources of at most a chunk each, at 3 characters a
    token (no tokenizer on the request path)."""
    return math.ceil((2 * len(question) + len(INSTRUCTIONS) + k * (settings.chunk_chars + 200)) / 3) + 10


def _scope(portal, actor, body: dict) -> tuple[list[str], dict]:
    """Return the ids of the collections a request covers (all the caller may read by default)
    and their names by id; 404 for any it names that the caller may not read."""
    readable = state_of(portal).catalog.readable(actor)
    names = {c["id"]: c["name"] for c in readable}
    asked = body.get("collections")
    if asked is None:
        return list(names), names
    for collection_id in asked:
        readable_collection(portal, actor, collection_id)
    return list(dict.fromkeys(asked)), names


def search_view(portal):
    state, actor, body = state_of(portal), g.actor, g.json_body  # checked against schemas.search_body
    query, k = body["query"], body.get("k", state.settings.top_k)
    ids, _names = _scope(portal, actor, body)
    started = time.monotonic()
    hits = retrieve(portal, actor, query, ids, k, g.request_id)
    return Response(json.dumps({"hits": [hit_view(h) for h in hits],
                                "took_ms": round((time.monotonic() - started) * 1000, 1)}),
                    status=200, mimetype="application/json")


# --- answers ------------------------------------------------------------------------------------------
def answer_target(portal, actor, model: str | None):
    """Return the chat target that answers ``actor`` (the configured ``answer_model`` unless an
    admin names one). The chat plugin's roles hold: 403 when the caller may not use it."""
    state = state_of(portal)
    model = model or state.settings.answer_model
    if not model:
        raise PortalError("No answer model is set (plugins.documents.answer_model).", status=503,
                          code="answer_model_missing")
    try:
        target = portal.hook.portal_chat_target(portal=portal, actor=actor, model=model) or \
            portal.hook.portal_chat_backend(portal=portal, model=model)
    except PortalError as refusal:
        if refusal.status == 403:
            raise PortalError(f"You may not use the answer model `{model}`, so you cannot ask the documents; "
                              "an admin can set one your role may use (plugins.documents.answer_model).",
                              status=403, code="model_forbidden") from None
        target = None
    if target is None:
        raise PortalError(f"The answer model {model} is not served here.", status=503, code="answer_model_missing")
    return target


class CitingStream(OpenAIStreamAdapter):
    """An OpenAI chat stream passed on as it comes, with the sources list as a last content
    chunk just before ``[DONE]``. An end without ``[DONE]`` is left for the relay to report.
    ``query_tokens`` (the query's embedding) are added to the usage the answer reports."""

    def __init__(self, response, model: str, hits, query_tokens: int = 0):
        super().__init__(response, model, call_id="docs")
        self.headers = response.headers
        self.hits = hits
        self.query_tokens = query_tokens

    def take(self, events: bytes) -> None:
        for event in events.split(b"\n\n"):
            if not event.strip():
                continue
            if self.query_tokens and b'"usage"' in event:
                event = self._with_query_tokens(event)
            if event.strip() == b"data: [DONE]":
                self.content(citations(self.hits))
                self.out.append(b"data: [DONE]\n\n")
                self.finished = True
                return
            self.out.append(event + b"\n\n")

    def _with_query_tokens(self, event: bytes) -> bytes:
        try:
            chunk = json.loads(event[event.index(b"data:") + 5:])
            usage = chunk["usage"]
            if not isinstance(usage, dict):
                return event  # a content chunk's "usage": null
            usage["prompt_tokens"] = int(usage.get("prompt_tokens") or 0) + self.query_tokens
            usage["total_tokens"] = usage["prompt_tokens"] + int(usage.get("completion_tokens") or 0)
        except (ValueError, KeyError, TypeError):
            return event  # not a usage chunk after all: passed on as it came
        return b"data: " + json.dumps(chunk).encode()

    def finish(self) -> None:
        pass


def ask_view(portal):
    state, actor, body = state_of(portal), g.actor, g.json_body  # checked against schemas.ask_body
    question = body["question"]
    if body.get("model") is not None and actor.role != "admin":
        raise PortalError("Only admins choose the answer model; others get plugins.documents.answer_model.",
                          status=403, code="model_forbidden")
    stream = body.get("stream", False)
    target = answer_target(portal, actor, body.get("model"))
    ids, _names = _scope(portal, actor, body)
    k = body.get("k", state.settings.top_k)
    # one admission for the whole ask: the query's embedding and the answer are one row
    call = MeteredCall(portal, actor, model="documents:ask", backend=state.backend, upstream_model=target.upstream_model,
                       stream=stream, request_id=g.request_id, prompt_text=question,
                       prices=(target.input_cost_per_token, target.output_cost_per_token),
                       estimated_prompt_tokens=ask_estimate(state.settings, question, k))
    call.admit()
    try:
        hits = search_collections(portal, question, ids, k)
    except PortalError as failure:
        call.end(failure.code or "upstream_error", failure.status, failure.message)
        raise
    call.add_part(question, state.settings.embedding_price)
    messages = grounded_messages(hits, [{"role": "user", "content": question}])
    call.prompt_text = messages[0]["content"] + question
    chat = {"model": target.upstream_model, "messages": messages, "stream": stream}
    if stream:
        chat["stream_options"] = {"include_usage": True}
    target.backend.attribute(chat, actor, g.request_id, None)
    try:
        response = target.backend.send_chat(json.dumps(chat).encode(), target.backend.request_headers(g.request_id, actor),
                                            state.answer_timeout(stream), stream)
    except (UpstreamFailure, PortalError) as failure:
        call.end(failure.code or "upstream_error", failure.status, failure.message)
        raise PortalError(f"The answer model failed: {failure.message}", status=502, code="upstream_error",
                          type="upstream_error") from None
    except Exception as exc:
        call.end("upstream_unreachable", 502, f"{type(exc).__name__}: {exc}")
        raise PortalError("The answer model cannot be reached.", status=502, code="upstream_unreachable",
                          type="upstream_error") from None
    if response.status != 200:
        call.end("upstream_error", 502, f"HTTP {response.status}")
        raise PortalError(f"The answer model answered HTTP {response.status}.", status=502, code="upstream_error",
                          type="upstream_error")
    sources = [hit_view(h, n) for n, h in enumerate(hits, 1)]
    if not stream:
        return _plain_answer(call, response, hits, sources)
    stream_state = StreamState(strip_usage=True)

    def on_end(stream_state: StreamState):
        usage = stream_state.usage or {}
        reported = (usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)) if usage else None
        call.end(stream_state.outcome, stream_status(stream_state.outcome), stream_state.error, usage=reported,
                 answer_text="".join(stream_state.text), cost=stream_state.cost)

    def events():
        yield sse_event("sources", sources)
        yield from relay(CitingStream(response, target.upstream_model, hits), b"", stream_state,
                         state.settings.heartbeat, state.settings.answer_timeout, on_end, portal.live_streams)

    return Response(events(), status=200, mimetype="text/event-stream",
                    headers=STREAM_HEADERS, direct_passthrough=True)


def _plain_answer(call: MeteredCall, response, hits, sources) -> Response:
    try:
        data = json.loads(response.data)
        text = data["choices"][0]["message"]["content"] or ""
        usage = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError):
        call.end("upstream_malformed", 502, "the answer model's answer was not a chat completion")
        raise PortalError("The answer model answered with something other than a chat completion.", status=502,
                          code="upstream_malformed", type="upstream_error") from None
    reported = (usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)) if usage else None
    call.end("ok", 200, usage=reported, answer_text=text, cost=usage.get("cost"))
    return Response(json.dumps({"answer": text + citations(hits), "sources": sources}), status=200,
                    mimetype="application/json")
