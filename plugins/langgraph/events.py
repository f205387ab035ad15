"""LangGraph's run stream: its events parsed, relayed as they come, and what a run used.

The server frames events with CRLF (the relay turns them into LF), sends ``metadata`` first and
one event per stream mode after, and has no end event: closing the body ends a run. A graph
that raises sends ``event: error`` with ``{"error", "message"}`` and still answers HTTP 200.
"""
from __future__ import annotations

import json
import time

from agent_portal.sse import StreamState, sse_event

AI_TYPES = ("ai", "AIMessageChunk", "AIMessage")


def parse_events(block: bytes) -> list[tuple[bytes, str, object]]:
    """Return ``(raw_event, name, data)`` for each complete event of ``block`` (LF framed).

    Raises ValueError when a line is not SSE or a data payload is not JSON.
    """
    parsed = []
    for raw in block.split(b"\n\n"):
        if not raw.strip():
            continue
        name, data_lines = "message", []
        for line in raw.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                data_lines.append(line[5:].lstrip(b" "))
            elif line and not line.startswith((b":", b"id:", b"retry:")):
                raise ValueError("an SSE line that is neither data, event, id nor comment")
        data = json.loads(b"\n".join(data_lines)) if data_lines else None
        parsed.append((raw, name, data))
    return parsed


def message_text(message: dict) -> str:
    """Return the text of one serialized LangChain message (string or content blocks)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return ""


def _is_ai(message) -> bool:
    return isinstance(message, dict) and message.get("type") in AI_TYPES


def _usage(message: dict) -> tuple[int, int] | None:
    usage = message.get("usage_metadata")
    if not isinstance(usage, dict):
        return None
    try:
        return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    except (TypeError, ValueError):
        return None


class RunMeter:
    """What one run used, from the events it sent: tokens the graph's model reported
    (``usage_metadata``), the answer's text, the run id and the first and last state."""

    def __init__(self):
        self.run_id = None
        self.streamed_tokens = [0, 0]
        self.streamed_usage = False
        self.streamed_text: list[str] = []
        self.streamed_ids: set = set()
        self.first_ids: set | None = None
        self.final_messages: list = []
        self.error = None

    def observe(self, name: str, data) -> str:
        """Take one event; returns the answer text it adds (a token of a streamed message)."""
        if name == "metadata" and isinstance(data, dict):
            self.run_id = self.run_id or data.get("run_id")
        elif name == "error":
            self.error = data if isinstance(data, dict) else {"error": "error", "message": str(data)}
        elif name == "messages" and isinstance(data, list) and data and _is_ai(data[0]):
            return self._chunk(data[0])
        elif name == "messages/complete" and isinstance(data, list):
            for message in data:
                if _is_ai(message) and message.get("id") not in self.streamed_ids:
                    self.final_messages.append(message)
        elif name == "values" and isinstance(data, dict):
            self.take_values(data)
        elif name == "updates" and isinstance(data, dict):
            for update in data.values():
                messages = update.get("messages") if isinstance(update, dict) else None
                for message in messages if isinstance(messages, list) else []:
                    if _is_ai(message):
                        self._keep_final(message)
        return ""

    def _chunk(self, chunk: dict) -> str:
        self.streamed_ids.add(chunk.get("id"))
        usage = _usage(chunk)
        if usage:
            self.streamed_usage = True
            self.streamed_tokens[0] += usage[0]
            self.streamed_tokens[1] += usage[1]
        text = message_text(chunk)
        if text:
            self.streamed_text.append(text)
        return text

    def _keep_final(self, message: dict) -> None:
        if all(m.get("id") != message.get("id") for m in self.final_messages):
            self.final_messages.append(message)

    def take_values(self, values: dict, before_last_human: bool = False) -> None:
        """Take a state's values: the first one seen is the state before the run, the later
        ones hold the run's new messages. With ``before_last_human`` (a ``/runs/wait`` answer,
        the only state seen), the new messages are those after the last human message."""
        messages = [m for m in values.get("messages") or [] if isinstance(m, dict)]
        if before_last_human:
            last_human = max((i for i, m in enumerate(messages) if m.get("type") == "human"), default=-1)
            self.first_ids = {m.get("id") for m in messages[:last_human + 1]}
        if self.first_ids is None:
            self.first_ids = {m.get("id") for m in messages}
            return
        for message in messages:
            if _is_ai(message) and message.get("id") not in self.first_ids:
                self._keep_final(message)

    def new_messages(self) -> list:
        """Return the AI messages the run added that were not streamed token by token."""
        return [m for m in self.final_messages if m.get("id") not in self.streamed_ids]

    def usage(self) -> tuple[int, int] | None:
        """Return (input, output) tokens the graph's models reported, or None when none did."""
        if self.streamed_usage:
            return tuple(self.streamed_tokens)
        reported = [u for u in (_usage(m) for m in self.final_messages) if u]
        if not reported:
            return None
        return sum(u[0] for u in reported), sum(u[1] for u in reported)

    def answer_text(self) -> str:
        """Return the run's answer: the streamed tokens, else the text of its new AI messages."""
        if self.streamed_text:
            return "".join(self.streamed_text)
        return "\n\n".join(t for t in (message_text(m) for m in self.final_messages) if t)


class RunStreamState(StreamState):
    """A relayed run stream's state: the relay's, plus the run's meter."""

    __slots__ = ("meter", "first_at")

    def __init__(self):
        super().__init__(strip_usage=False)
        self.meter = RunMeter()
        self.first_at = None


class LangGraphEvents:
    """LangGraph's stream protocol for :func:`agent_portal.sse.relay`: every event forwarded as
    sent; a body that ends is a finished run; the portal's errors framed as the server's."""

    ends_at_eof = True
    separator = b"\n\n"

    @staticmethod
    def filter(block: bytes, state: RunStreamState) -> bytes:
        out = []
        if state.first_at is None:
            state.first_at = time.monotonic()
        for raw, name, data in parse_events(block):
            text = state.meter.observe(name, data)
            if text:
                state.text.append(text)
            if name == "error":
                state.error = state.meter.error
                state.outcome = "upstream_error"
            state.chunks += 1
            out.append(raw)
        return b"".join(e + b"\n\n" for e in out)

    @staticmethod
    def error(message: str, code: str, type_: str = "upstream_error") -> bytes:
        return sse_event("error", {"error": code, "message": message})
