"""OpenAI's chat stream as :func:`agent_portal.sse.relay` reads it: chunks parsed for usage, cost,
text and finish reasons, the usage-only chunk dropped when the client did not ask for it, a
malformed event left out (and counted), ``[DONE]`` the end, errors as OpenAI error objects."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:  # the state is the relay's; this module needs only its attributes
    from .sse import StreamState

DONE = b"[DONE]"


def sse_error(message: str, code: str, type_: str = "upstream_error") -> bytes:
    """Return one SSE frame carrying an OpenAI error object (clients raise on it)."""
    return b"data: " + json.dumps({"error": {"message": message, "type": type_, "code": code}}).encode() + b"\n\n"


MAX_SKIPPED = 3  # malformed events a stream may send before it counts as broken


class MalformedStream(ValueError):
    """Too many malformed events: the stream is broken. ``forward`` holds the events of the same
    block that came before and are whole (already counted in the state): the client gets them."""

    def __init__(self, message: str, forward: bytes):
        super().__init__(message)
        self.forward = forward


def filter_events(block: bytes, state: StreamState) -> bytes:
    """Return the complete SSE events of ``block`` to forward, updating ``state``.

    Parses each ``data:`` line: records usage and cost, drops the usage-only chunk when the
    client did not ask for it, notes ``[DONE]`` and finish reasons. A malformed event is left
    out and counted; raises :class:`MalformedStream` when more than ``MAX_SKIPPED`` were.
    """
    out = []
    events = block.split(b"\n\n")
    unchanged = not events[-1]  # the block ends where an event does
    for event in events:
        if not event.strip():  # an empty event passes as it is; one of spaces is left out
            unchanged = unchanged and not event
            continue
        try:
            forward = _filter_event(event, state)
        except ValueError as exc:
            state.skipped += 1
            if state.skipped > MAX_SKIPPED:
                raise MalformedStream(str(exc), b"".join(e + b"\n\n" for e in out)) from exc
            unchanged = False
            continue
        unchanged = unchanged and forward is event
        if forward is not None:
            out.append(forward)
    if unchanged:  # every event forwarded as it came (the usual case): the block itself, no copy
        return block
    return b"".join(e + b"\n\n" for e in out)


def _filter_event(event: bytes, state: StreamState) -> bytes | None:
    """Return one event to forward (None to drop it), updating ``state``; ValueError when malformed."""
    data = None
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].strip()
        elif line and not line.startswith((b":", b"event:", b"id:", b"retry:")):
            raise ValueError("an SSE line that is neither data, event, id nor comment")
    if data is None:
        return event
    if data == DONE:
        state.done = True
        return event
    chunk = orjson.loads(data)  # a JSONDecodeError is a ValueError
    if not isinstance(chunk, dict):
        raise ValueError("an SSE data line that is not a JSON object")
    if "error" in chunk and chunk["error"]:
        state.error = chunk["error"]
        state.outcome = "upstream_error"
        if state.chunks:  # mid-answer (LiteLLM's, vLLM's, OpenRouter's shape of a broken stream):
            state.broken = True  # a failure like a cut, for the relay to continue elsewhere
            return None
        return event
    state.chunks += 1
    if state.call_id is None:
        state.call_id = chunk.get("id")
    usage = chunk.get("usage")
    choices = chunk.get("choices")
    if usage:
        state.usage = usage
        cost = chunk.get("cost", usage.get("cost") if isinstance(usage, dict) else None)
        if cost is not None:
            state.cost = cost
        if state.strip_usage and _usage_only(choices):
            return None
    if choices:
        _collect_text(choices, state.text)
        if any(isinstance(c, dict) and c.get("finish_reason") for c in choices):
            state.finished = True
    return event


def _collect_text(choices, text: list) -> None:
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        if isinstance(delta.get("content"), str):
            text.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                text.append(function["arguments"])


def _usage_only(choices) -> bool:
    """True for OpenAI's ``choices: []`` and LiteLLM's ``[{"index": 0, "delta": {}}]``."""
    if not choices:
        return True
    return all(isinstance(c, dict) and not c.get("delta") and not c.get("finish_reason")
               for c in choices)


class OpenAIEvents:
    """OpenAI's chat stream, the default protocol of :func:`agent_portal.sse.relay`: ``data: [DONE]`` ends it,
    and an end without it is a failure; errors are OpenAI error objects."""

    ends_at_eof = False
    separator = b"\n\n"

    @staticmethod
    def filter(block: bytes, state: StreamState) -> bytes:
        return filter_events(block, state)

    @staticmethod
    def error(message: str, code: str, type_: str = "upstream_error") -> bytes:
        return sse_error(message, code, type_)
