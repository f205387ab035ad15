"""``POST /search``: one web search for a user, metered, limited, streamed as real SSE."""
from __future__ import annotations

import json

from flask import Response, g

from agent_portal import PortalError
from agent_portal.metering import MeteredCall, stream_status
from agent_portal.schemas import SSE_EVENT, STRING, array, media, obj
from agent_portal.sse import STREAM_HEADERS, relay

from .client import normalize_sources
from .settings import MODES, NAME
from .stream import PerplexicaEvents, SearchStreamState



def _bad(message: str) -> PortalError:
    return PortalError(message, status=400, code="invalid_search")


def search_body_schema(settings) -> dict:
    """Return the JSON Schema of a search request (the core checks every body against it)."""
    bad = {"x-error-code": "invalid_search"}
    return {"type": "object", "required": ["query"], "x-error-code": "invalid_json", "properties": {
        "query": {"type": "string", "pattern": "\\S", "maxLength": settings.max_query_chars, **bad},
        "sources": {"type": "array", "minItems": 1, "items": {"type": "string", **bad}, **bad,
                    "description": "web, academic, discussions: those the caller's role may search"},
        "mode": {"enum": list(MODES), **bad},
        "stream": {"type": "boolean", **bad},
        "history": {"type": "array", **bad, "items": {**bad, "anyOf": [
            {"type": "object", "properties": {"role": {"enum": ["user", "assistant"]}, "content": {"type": "string"}},
             "required": ["role", "content"]},
            {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string"},
             "description": "Perplexica's own pair: [human | assistant, text]"}]}},
    }}


# What /search answers: the answer with its sources, or the SSE stream of sources, delta, done.
SEARCH_ANSWERS = {"200": media(**{
    "application/json": obj("answer", "sources", answer=STRING,
                            sources=array(obj(title=STRING, url=STRING, snippet=STRING))),
    "text/event-stream": SSE_EVENT})}


def read_search(settings, actor) -> dict:
    """Return the checked search request: ``query``, ``sources``, ``mode``, ``history`` (as
    Perplexica's ``[["human"|"assistant", text]]``) and ``stream``; 403 for a source the
    caller's role may not search (the body's shape was checked against :func:`search_body_schema`)."""
    body = g.json_body
    query = body["query"]
    allowed = settings.allowed_sources(actor)
    sources = body.get("sources", ["web"] if "web" in allowed else list(allowed[:1]))
    refused = [s for s in sources if s not in allowed]
    if refused:
        raise PortalError(f"You may not search {', '.join(refused)}.", status=403, code="source_forbidden")
    mode = body.get("mode", settings.mode)
    stream = body.get("stream", False)
    return {"query": query, "sources": sorted(set(sources)), "mode": mode, "stream": stream,
            "history": read_history(body.get("history", []), settings.max_history_turns)}


def read_history(history, max_turns: int) -> list:
    """Return ``history`` as Perplexica's pairs; accepts its own pairs or OpenAI-style
    ``{role, content}`` messages. Only the last ``max_turns`` are kept."""
    if not isinstance(history, list):
        raise _bad("`history` must be a list.")
    pairs = []
    for turn in history:
        if isinstance(turn, dict):
            turn = ["human" if turn.get("role") == "user" else "assistant" if turn.get("role") == "assistant"
                    else None, turn.get("content")]
        if (not isinstance(turn, (list, tuple)) or len(turn) != 2 or turn[0] not in ("human", "assistant")
                or not isinstance(turn[1], str)):
            raise _bad("each `history` turn must be [\"human\" | \"assistant\", text].")
        pairs.append([turn[0], turn[1]])
    return pairs[-max_turns:] if max_turns else []


def search_call(portal, actor, search: dict, request_id: str) -> MeteredCall:
    """Return the metered call of one search (model ``search:<sources>``)."""
    state = portal.extensions[NAME]
    prompt = "\n".join([search["query"], *(text for _role, text in search["history"])])
    return MeteredCall(portal, actor, model="search:" + "+".join(search["sources"]), backend=state.backend,
                       upstream_model=search["mode"], stream=search["stream"], request_id=request_id,
                       prompt_text=prompt, prices=state.settings.prices,
                       reserve_completion_tokens=state.settings.reserve_completion_tokens)


def search_view(portal):
    state = portal.extensions[NAME]
    search = read_search(state.settings, g.actor)
    call = search_call(portal, g.actor, search, g.request_id)
    call.admit()
    body = state.client.search_body(search["query"], search["sources"], search["mode"], search["history"],
                                    search["stream"])
    try:
        response = state.client.search(body, search["stream"], g.request_id)
    except PortalError as failure:
        call.end(failure.code, failure.status, failure.message)
        raise
    if response.status != 200:
        message = _message(response.data) or f"HTTP {response.status}"
        call.end("upstream_error", 502, message)
        raise PortalError(f"Perplexica failed: {message}.", status=502, code="upstream_error", type="upstream_error")
    if not search["stream"]:
        return _plain(call, response.data)
    stream_state = SearchStreamState()

    def on_end(stream_state: SearchStreamState):
        call.end(stream_state.outcome, stream_status(stream_state.outcome), stream_state.error,
                 answer_text="".join(stream_state.text))

    settings = state.settings
    return Response(relay(response, b"", stream_state, settings.heartbeat, settings.between_events, on_end,
                          portal.live_streams, events=PerplexicaEvents),
                    status=200, mimetype="text/event-stream", headers=STREAM_HEADERS, direct_passthrough=True)


def _message(payload: bytes) -> str | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return str(data.get("message")) if isinstance(data, dict) and data.get("message") else None


def _plain(call: MeteredCall, payload: bytes) -> Response:
    try:
        data = json.loads(payload)
        answer = data["message"]
        if not isinstance(answer, str):
            raise TypeError("message is not text")
    except (ValueError, KeyError, TypeError):
        call.end("upstream_malformed", 502, "Perplexica's answer was not {message, sources}")
        raise PortalError("Perplexica answered with something other than {message, sources}.", status=502,
                          code="upstream_malformed", type="upstream_error") from None
    call.end("ok", 200, answer_text=answer)
    return Response(json.dumps({"answer": answer, "sources": normalize_sources(data.get("sources"))}),
                    status=200, mimetype="application/json")
