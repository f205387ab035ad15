"""Perplexica's stream: newline-delimited JSON under an SSE content type, made real SSE.

Lines: ``{"type": "init"}``, ``{"type": "sources", "data": [...]}``, ``{"type": "response",
"data": "<text>"}``..., ``{"type": "done"}``. On a failure the stream just stops, so an end
without ``done`` is an incomplete answer. The client gets ``event: sources`` (``[{title, url,
snippet}]``), ``event: delta`` (``{"text"}``), ``event: done`` and, on any failure,
``event: error`` (``{"error": code, "message"}``).
"""
from __future__ import annotations

import json

from agent_portal.adapter import OpenAIStreamAdapter
from agent_portal.sse import StreamState, sse_event

from .client import normalize_sources


def parse_lines(block: bytes) -> list[dict]:
    """Return the JSON objects of complete NDJSON lines; ValueError on a line that is not one."""
    lines = []
    for line in block.split(b"\n"):
        if not line.strip():
            continue
        item = json.loads(line)
        if not isinstance(item, dict):
            raise ValueError("a line that is not a JSON object")
        lines.append(item)
    return lines


class SearchStreamState(StreamState):
    """A relayed search's state: the relay's, plus the sources it carried."""

    __slots__ = ("sources",)

    def __init__(self):
        super().__init__(strip_usage=False)
        self.sources: list = []


class PerplexicaEvents:
    """Perplexica's stream protocol for :func:`agent_portal.sse.relay`."""

    ends_at_eof = False
    separator = b"\n"

    @staticmethod
    def filter(block: bytes, state: SearchStreamState) -> bytes:
        out = []
        for item in parse_lines(block):
            kind = item.get("type")
            if kind == "sources":
                state.sources = normalize_sources(item.get("data"))
                out.append(sse_event("sources", state.sources))
            elif kind == "response" and isinstance(item.get("data"), str):
                state.text.append(item["data"])
                state.chunks += 1
                out.append(sse_event("delta", {"text": item["data"]}))
            elif kind == "done":
                state.done = True
                out.append(sse_event("done", {}))
        return b"".join(out)

    @staticmethod
    def error(message: str, code: str, type_: str = "upstream_error") -> bytes:
        return sse_event("error", {"error": code, "message": message})


def citations(sources: list) -> str:
    """Return the sources as the numbered list the answer's [n] markers point at."""
    if not sources:
        return ""
    lines = [f"[{i}] {s['title'] or s['url']}" + (f" — {s['url']}" if s["url"] else "")
             for i, s in enumerate(sources, 1)]
    return "\n\nSources:\n" + "\n".join(lines)


class SearchAsChat(OpenAIStreamAdapter):
    """A Perplexica stream read as an OpenAI chat stream: the answer's pieces as content, the
    sources as numbered citations at the end, ``[DONE]`` after ``done``; an error object when the
    stream stops without ``done``."""

    separator = b"\n"

    def __init__(self, response, model: str):
        super().__init__(response, model, call_id="search")
        self.sources: list = []
        self.chunk({"role": "assistant", "content": ""})

    def take(self, events: bytes) -> None:
        try:
            lines = parse_lines(events)
        except ValueError as exc:
            self.fail(f"Perplexica sent a malformed line ({exc}).", "upstream_malformed")
            return
        for item in lines:
            if self.finished:
                return
            kind = item.get("type")
            if kind == "sources":
                self.sources = normalize_sources(item.get("data"))
            elif kind == "response" and isinstance(item.get("data"), str):
                self.content(item["data"])
            elif kind == "done":
                self.content(citations(self.sources))
                self.complete()

    def finish(self) -> None:
        self.fail("Perplexica stopped before the answer was complete.", "upstream_incomplete")
