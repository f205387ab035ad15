"""LangGraph's run stream: its events parsed, relayed as they come, and what a run used.

The server frames events with CRLF (the relay turns them into LF), sends ``metadata`` first and
one event per stream mode after, and has no end event: closing the body ends a run. A graph
that raises sends ``event: error`` with ``{"error", "message"}`` and still answers HTTP 200.
"""
from __future__ import annotations

import json
import re
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


def _data_of(raw: bytes) -> bytes:
    """Return the data of one relayed event as it was sent (LangGraph sends one data line)."""
    cut = raw.find(b"data:")
    return raw[cut + 5:].lstrip(b" ") if cut >= 0 else b""


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


def _same_message(message_id) -> str:
    """Return the id a message's chunks and its whole form share: a model called without
    streaming names its message ``<run>-0`` where its streamed chunks say ``<run>``."""
    return _GENERATION.sub("", str(message_id))


_GENERATION = re.compile(r"-\d+$")
RELAYED_CHARS = 1_000_000  # what the last-resort count reads of a run's relayed payloads


class RunMeter:
    """What one run used, from the events it sent, whatever its stream modes: tokens the
    graph's models reported (``usage_metadata`` on whole messages, else summed over streamed
    chunks, each message once), the answer's text, the run id and the first and last state.
    Failing any message, the text of everything relayed is what a count reads."""

    def __init__(self):
        self.run_id = None
        self.chunk_tokens: dict[str, list[int]] = {}  # message id -> [input, output] of its chunks
        self.streamed_text: list[str] = []
        self.streamed_ids: set = set()
        self._streaming = None  # the message whose tokens came last
        self.partial_text: dict[str, str] = {}  # messages mode: each message's text so far
        self.first_ids: set | None = None
        self.final_messages: list = []
        self.relayed: list[str] = []
        self.relayed_chars = 0
        self.error = None

    def observe(self, name: str, data, sent: bytes | None = None) -> str:
        """Take one event (``sent``: its data as it came, when the caller has it, so nothing is
        encoded again); returns the answer text it adds (a token of a streamed message)."""
        mode = name.split("|", 1)[0]  # subgraphs' events are named "<mode>|<namespace>"
        if mode == "metadata":
            if isinstance(data, dict):
                self.run_id = self.run_id or data.get("run_id")
            return ""
        self._keep_relayed(data, sent)
        if mode == "error":
            self.error = data if isinstance(data, dict) else {"error": "error", "message": str(data)}
        elif mode == "messages" and isinstance(data, list) and data and _is_ai(data[0]):
            return self._chunk(data[0])  # messages-tuple: [chunk, metadata]
        elif mode == "messages/partial" and isinstance(data, list):
            for message in data:
                if _is_ai(message):
                    self.partial_text[str(message.get("id"))] = message_text(message)
        elif mode == "messages/complete" and isinstance(data, list):
            for message in data:
                if _is_ai(message):
                    self._keep_final(message)
        elif mode == "values" and isinstance(data, dict):
            self.take_values(data)
        elif mode == "updates" and isinstance(data, dict):
            for update in data.values():
                messages = update.get("messages") if isinstance(update, dict) else None
                for message in messages if isinstance(messages, list) else []:
                    if _is_ai(message) and (self.first_ids is None or message.get("id") not in self.first_ids):
                        self._keep_final(message)
        elif mode == "events" and isinstance(data, dict):
            return self._model_event(data)
        return ""

    def _model_event(self, event: dict) -> str:
        """``events`` mode: a chat model's streamed chunk, or its whole output at its end."""
        payload = event.get("data") if isinstance(event.get("data"), dict) else {}
        if event.get("event") == "on_chat_model_stream" and _is_ai(payload.get("chunk")):
            return self._chunk(payload["chunk"])
        if event.get("event") == "on_chat_model_end" and _is_ai(payload.get("output")):
            self._keep_final(payload["output"])
        return ""

    def _keep_relayed(self, data, sent: bytes | None) -> None:
        """Keep what the event relayed, for the last-resort count: its text up to
        ``RELAYED_CHARS``, its length past that (the relay's bytes: nothing encoded per event)."""
        if data is None:
            return
        if self.relayed_chars >= RELAYED_CHARS and sent is not None:
            self.relayed_chars += len(sent)
            return
        if sent is not None:
            text = sent.decode("utf-8", "replace")
        else:
            text = data if isinstance(data, str) else json.dumps(data)
        if self.relayed_chars < RELAYED_CHARS:
            self.relayed.append(text)
        self.relayed_chars += len(text)

    def _chunk(self, chunk: dict) -> str:
        message_id = str(chunk.get("id"))
        self.streamed_ids.add(chunk.get("id"))
        usage = _usage(chunk)
        if usage:
            tokens = self.chunk_tokens.setdefault(message_id, [0, 0])
            tokens[0] += usage[0]
            tokens[1] += usage[1]
        text = message_text(chunk)
        if text:
            message = _same_message(chunk.get("id"))
            if self.streamed_text and message != self._streaming:
                text = "\n\n" + text  # the run's next message: apart from the one before, as finals are
            self._streaming = message
            self.streamed_text.append(text)
        return text

    def _keep_final(self, message: dict) -> None:
        same = _same_message(message.get("id"))
        for index, kept in enumerate(self.final_messages):
            if _same_message(kept.get("id")) == same:
                if _usage(message) and not _usage(kept):
                    self.final_messages[index] = message  # the form that carries the usage wins
                return
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

    def usage(self) -> tuple[int, int] | None:
        """Return (input, output) tokens the graph's models reported, each message once (its
        whole form's report, else its chunks' sum), or None when none reported any."""
        whole = {_same_message(m.get("id")): u for m, u in ((m, _usage(m)) for m in self.final_messages) if u}
        parts = list(whole.values()) + [tuple(t) for i, t in self.chunk_tokens.items() if _same_message(i) not in whole]
        if not parts:
            return None
        return sum(p[0] for p in parts), sum(p[1] for p in parts)

    def answer_text(self) -> str:
        """Return the run's answer: the streamed tokens, else the text of its new AI messages
        (or of the messages it was streaming), else everything it relayed."""
        if self.streamed_text:
            return "".join(self.streamed_text)
        finals = "\n\n".join(t for t in (message_text(m) for m in self.final_messages) if t)
        if finals or self.partial_text:
            return finals or "\n\n".join(t for t in self.partial_text.values() if t)
        return self.relayed_text()

    def relayed_text(self) -> str:
        """Return what the run relayed (its events' data), for counting when no message was
        seen. Past ``RELAYED_CHARS`` the rest is not kept: the text is repeated to its length
        (the count is then the first part's rate over the whole)."""
        text = "".join(self.relayed)
        if self.relayed_chars > len(text) and text:
            text = (text * (self.relayed_chars // len(text) + 1))[:self.relayed_chars]
        return text


class RunStreamState(StreamState):
    """A relayed run stream's state: the relay's, plus the run's meter and the stream mode the
    portal added for it alone (``hidden``: its events are metered, never relayed)."""

    __slots__ = ("meter", "first_at", "hidden")

    def __init__(self, hidden: str | None = None):
        super().__init__(strip_usage=False)
        self.meter = RunMeter()
        self.first_at = None
        self.hidden = hidden


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
            text = state.meter.observe(name, data, _data_of(raw))
            if text:
                state.text.append(text)
            if name == "error":
                state.error = state.meter.error
                state.outcome = "upstream_error"
            if state.hidden is not None and name.split("|", 1)[0] == state.hidden:
                continue
            state.chunks += 1
            out.append(raw)
        return b"".join(e + b"\n\n" for e in out)

    @staticmethod
    def error(message: str, code: str, type_: str = "upstream_error") -> bytes:
        return sse_event("error", {"error": code, "message": message})
