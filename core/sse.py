"""Relaying an upstream's stream to the client: chunk by chunk, heartbeats, failures visible.

The protocol of the stream is passed in (``events``); OpenAI's chat stream
(:mod:`agent_portal.openai_sse`) is the default.
"""
from __future__ import annotations

import json
import queue
import socket
import threading
import time

from .openai_sse import OpenAIEvents

DATA, EOF, FAILED, SHUTDOWN = 0, 1, 2, 3
HEARTBEAT = b": keep-alive\n\n"
# what a streamed answer carries: never cached, never buffered by a proxy (nginx, Kong)
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(name: str, data) -> bytes:
    """Return one named SSE event whose data is ``data`` as JSON."""
    return f"event: {name}\ndata: ".encode() + json.dumps(data).encode() + b"\n\n"


def close_upstream(response) -> None:
    """Close ``response``'s connection at once, so the upstream sees the caller leave."""
    connection = getattr(response, "connection", None) or getattr(response, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        response.close()
    except Exception:
        pass


def pump(response, blocks: queue.Queue, size: int = 65536) -> None:
    """Read ``response`` in the background, putting ``(kind, payload)`` on ``blocks``."""
    try:
        while True:
            data = response.read1(size)
            if not data:
                blocks.put((EOF, None))
                return
            blocks.put((DATA, data))
    except Exception as exc:
        blocks.put((FAILED, exc))


class StreamState:
    """What one relayed stream has seen: usage, cost, the text relayed (content and tool-call
    arguments, kept to count tokens when no usage comes), how it ended."""

    __slots__ = ("usage", "cost", "call_id", "done", "chunks", "error", "outcome", "text", "strip_usage",
                 "finished", "skipped", "broken")

    def __init__(self, strip_usage: bool):
        self.usage = None
        self.cost = None
        self.call_id = None
        self.done = False
        self.chunks = 0
        self.error = None
        self.outcome = "ok"
        self.text: list[str] = []
        self.strip_usage = strip_usage
        self.finished = False  # a choice's finish_reason came: the answer is whole
        self.skipped = 0  # malformed events left out
        self.broken = False  # the upstream reported an error mid-answer (an in-band error event)

    def restart(self) -> None:
        """Forget how the last upstream ended, for the next one that continues the answer
        (the text relayed so far stays)."""
        self.usage = self.cost = self.error = None
        self.done = self.finished = self.broken = False
        self.outcome = "ok"


class NoContinuation(str):
    """Why no other upstream continues an answer (a ``resume`` answer), with the error code the
    client's error event carries (``continuation_refused``, ``continuation_unavailable``)."""

    def __new__(cls, message: str, code: str):
        reason = super().__new__(cls, message)
        reason.code = code
        return reason


def relay(response, first_block: bytes, state: StreamState, heartbeat_seconds: float,
          stall_seconds: float, on_end, live: set | None = None, events=OpenAIEvents, resume=None):
    """Yield the client's SSE bytes from ``response``, then call ``on_end(state)`` exactly once.

    ``events`` is the stream's protocol: ``filter(block, state)`` returns the client's bytes for
    a block of complete upstream events (raising ValueError on a malformed one; setting
    ``state.done`` at the protocol's end event), ``separator`` ends one upstream event (a blank
    line in SSE, a newline in NDJSON), ``error(message, code, type)`` frames the portal's own
    error event, and ``ends_at_eof`` says whether the upstream closing the body is a normal end
    (LangGraph) or a cut (OpenAI, which ends with ``[DONE]``; an OpenAI stream that ends after
    a finish reason without ``[DONE]`` is whole, and the client gets its ``[DONE]``).

    Sends heartbeats while the upstream is silent. When the upstream resets, stalls past
    ``stall_seconds`` (a number, or a function asked at each silence), turns malformed, reports an error mid-answer (``state.broken``) or ends
    early, ``resume(state)`` (when given) may return
    ``(response, first_block)`` of another upstream that continues the answer, relayed on the
    same client stream; or a message saying why none can (a :class:`NoContinuation` also
    gives the error event's code); otherwise, and when the portal shuts
    down (``end_streams`` puts ``SHUTDOWN`` on every queue registered in ``live``), the stream
    ends with an error event, never a clean end. If the client leaves, the upstream connection
    is closed at once.
    """
    blocks: queue.Queue = queue.Queue()
    buffer = b""
    pending = first_block
    reader = None
    body_ended = False
    if live is not None:
        live.add(blocks)
    try:
        last_data = time.monotonic()
        while True:
            failure = None  # (outcome, error, client message, code, type) of a failure mid-stream
            if pending:
                if b"\r" in pending:  # SSE allows CRLF and CR line ends; relay in LF
                    pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                buffer += pending
                pending = b""
                cut = buffer.rfind(events.separator)
                if cut >= 0:
                    cut += len(events.separator)
                    complete, buffer = buffer[:cut], buffer[cut:]
                    try:
                        forward = events.filter(complete, state)
                    except ValueError as exc:  # the whole events before the malformed ones still go out
                        forward = getattr(exc, "forward", None)
                        failure = ("upstream_malformed", f"malformed chunk from upstream: {exc}",
                                   "The upstream sent a malformed chunk; the answer is incomplete.",
                                   "upstream_malformed", "upstream_error")
                    if forward:
                        yield forward
                if failure is None and state.broken:
                    said = state.error.get("message") if isinstance(state.error, dict) else state.error
                    failure = ("upstream_error", state.error,
                               f"The upstream failed mid-answer ({said}); the answer is incomplete.",
                               "upstream_error", "upstream_error")
                if failure is None:
                    if state.done or state.error:
                        return
                    if body_ended:
                        state.done = True
                        return
            if failure is None:
                if reader is None:
                    reader = threading.Thread(target=pump, args=(response, blocks), daemon=True)
                    reader.start()
                try:
                    kind, payload = blocks.get(timeout=heartbeat_seconds)
                except queue.Empty:
                    limit = stall_seconds() if callable(stall_seconds) else stall_seconds
                    if time.monotonic() - last_data <= limit:
                        yield HEARTBEAT
                        continue
                    kind, payload = None, None
                    failure = ("upstream_stalled", f"no data from upstream for {limit:g}s",
                               "The upstream stopped sending; the answer is incomplete.", "upstream_timeout",
                               "upstream_timeout")
                if kind == DATA:
                    pending = payload
                    last_data = time.monotonic()
                    continue
                if kind == SHUTDOWN:
                    state.outcome = "portal_shutdown"
                    state.error = "the portal shut down before the answer was complete"
                    yield events.error("The portal is shutting down; the answer is incomplete.",
                                       "portal_shutdown", "service_unavailable")
                    return
                if kind == FAILED:
                    failure = ("upstream_reset", f"{type(payload).__name__}: {payload}",
                               "The upstream connection failed mid-answer; the answer is incomplete.",
                               "upstream_reset", "upstream_error")
                elif kind == EOF and events.ends_at_eof:
                    body_ended = True
                    if buffer.strip():  # a last event without its separator: close it, filter it above
                        pending = events.separator
                        continue
                    state.done = True
                    return
                elif kind == EOF and state.finished:
                    # every choice finished (and its usage came, when asked): the answer is whole
                    body_ended = state.done = True
                    yield b"data: [DONE]\n\n"
                    return
                elif kind == EOF:
                    failure = ("upstream_incomplete", "the upstream ended the stream without [DONE]",
                               "The upstream ended the stream early; the answer is incomplete.",
                               "upstream_incomplete", "upstream_error")
            outcome, error, message, code, type_ = failure
            state.outcome, state.error = outcome, error
            continuation = resume(state) if resume is not None else None
            if isinstance(continuation, tuple):
                close_upstream(response)
                response, pending = continuation
                buffer, reader, body_ended, last_data = b"", None, False, time.monotonic()
                if live is not None:
                    live.discard(blocks)
                blocks = queue.Queue()  # the old reader may still post to the old one
                if live is not None:
                    live.add(blocks)
                state.restart()
                continue
            if isinstance(continuation, str):
                state.error = f"{error}; {continuation}"
                message = f"{message} {continuation}"
                code = getattr(continuation, "code", code)
            yield events.error(message, code, type_)
            return
    except GeneratorExit:
        state.outcome = "client_disconnected"
        raise
    finally:
        if live is not None:
            live.discard(blocks)
        if body_ended and state.error is None:
            response.release_conn()
        elif not (state.done and state.error is None and _reuse(response, reader, blocks)):
            close_upstream(response)
        on_end(state)


def end_streams(live: set) -> int:
    """Tell every stream registered in ``live`` to end with an error event; returns how many."""
    streams = list(live)
    for blocks in streams:
        blocks.put((SHUTDOWN, None))
    return len(streams)


def _reuse(response, reader, blocks: queue.Queue, wait: float = 0.05) -> bool:
    """Return the connection of a finished stream to the pool when its body ends at once.

    After ``[DONE]`` only the end of the chunked body is due; a connection kept alive saves the
    next call a TCP handshake. Anything else (more data, silence) and the caller closes it.
    """
    try:
        if reader is None:
            sock = getattr(getattr(response, "connection", None), "sock", None)
            if sock is None:
                return False
            sock.settimeout(wait)
            if response.read1(65536):  # more than the end: the upstream is still talking
                return False
        else:
            kind, _payload = blocks.get(timeout=wait)
            if kind != EOF:
                return False
        response.release_conn()
        return True
    except Exception:
        return False
