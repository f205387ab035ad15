"""The failover suite's fault wall: an OpenAI-compatible provider that misbehaves by model name,
one fault per scenario of failoverbench's catalogue, and logs every attempt it sees.

Written for this project from the catalogue's descriptions (the faults, not its code). Every
healthy answer is the same sixty-word canonical text, one word per chunk; given a prefill (a last
assistant message that the canonical text starts with) a healthy model continues after it.
"""
from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CANONICAL = (
    "A gateway earns trust on the bad days, not the good ones. When a provider stalls, cuts a "
    "stream or refuses a request, the caller should still receive a complete answer, or a clear "
    "error, exactly once. Retries must respect the provider, fallbacks must finish the "
    "sentence already started, and the bill must name the model that actually answered it.")
WORDS = re.findall(r"\S+\s*", CANONICAL)
assert len(WORDS) == 60

PREFILL_REFUSAL = {"error": {
    "message": "This model does not support assistant message prefill. The conversation must end with a "
               "user message.", "type": "invalid_request_error", "param": "messages", "code": "invalid_request"}}


class Timing:
    """The wall's clock for one profile: ``scale`` 1.0 is failoverbench's ``full`` profile."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.token_gap = 0.015 * scale
        self.first_token_delay = 20 * scale     # S07
        self.stall = 30 * scale                 # S09
        self.silence = 120 * scale              # S06
        self.outage = 60 * scale                # S15


class Wall:
    """The server and its attempt log: ``attempts`` holds ``{model, at, prefill, refused_prefill}``
    for every chat request, ``at`` in seconds since :meth:`reset`."""

    def __init__(self, timing: Timing):
        self.timing = timing
        self.lock = threading.Lock()
        self.attempts: list[dict] = []
        self.epoch = time.monotonic()
        wall = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    names = sorted(FAULTS) + ["fb-ok", "fb-ok-noprefill"]
                    return self.json(200, {"object": "list", "data": [
                        {"id": n, "object": "model", "created": 0, "owned_by": "wall"} for n in names]})
                self.json(404, {"error": {"message": "no such path", "type": "not_found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                wall.answer(self, body)

            def json(self, status, data, headers=None):
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "Wall":
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        """Start a scenario: an empty log, the clock (and S15's outage) from now."""
        with self.lock:
            self.attempts, self.epoch = [], time.monotonic()

    def log(self, model: str) -> list[dict]:
        with self.lock:
            return [a for a in self.attempts if a["model"] == model]

    # --- answers ---------------------------------------------------------------------------------
    def answer(self, h, body: dict) -> None:
        model = str(body.get("model", "")).removeprefix("openai/")
        messages = body.get("messages") or []
        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        prefill = last.get("content") if last.get("role") == "assistant" else None
        with self.lock:
            nth = sum(1 for a in self.attempts if a["model"] == model) + 1
            attempt = {"model": model, "at": time.monotonic() - self.epoch, "prefill": prefill is not None,
                       "refused_prefill": False}
            self.attempts.append(attempt)
        if model == "fb-ok-noprefill" and prefill is not None:
            attempt["refused_prefill"] = True
            return h.json(400, PREFILL_REFUSAL)
        fault = FAULTS.get(model)
        if fault is None:
            return self.stream(h, model, body, prefill)
        fault(self, h, model, body, nth, prefill)

    def stream(self, h, model, body, prefill=None, cut_after=None, stall_after=None, first_delay=0.0,
               malformed_at=None, done=True):
        """Stream the canonical answer (after ``prefill`` when it matches), with the faults asked."""
        text = CANONICAL[len(prefill):] if prefill and CANONICAL.startswith(prefill) else CANONICAL
        words = re.findall(r"\S+\s*", text)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        # chunked, as providers stream over HTTP/1.1: a body cut before its last chunk is
        # incomplete to the reader, not merely short
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def write(data: bytes) -> None:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        def event(data) -> None:
            raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
            write(b"data: " + raw + b"\n\n")

        def chunk(delta, finish=None, **extra):
            return {"id": "chatcmpl-wall", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

        try:
            if first_delay:
                time.sleep(first_delay)
            events = 0
            for i, word in enumerate(words):
                if i == cut_after:
                    return self.reset_connection(h)
                if i == stall_after:
                    time.sleep(self.timing.stall)
                    h.close_connection = True  # closed without the last chunk
                    return
                events += 1
                if events == malformed_at:
                    event(b"{\"id\": \"chatcmpl-wall\", \"choices\": [{\"delta\": {\"content\"")
                time.sleep(self.timing.token_gap)
                event(chunk({"role": "assistant", "content": word} if i == 0 else {"content": word}))
            event(chunk({}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                event({"id": "chatcmpl-wall", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": len(words),
                                                "total_tokens": 20 + len(words)}})
            if done:
                write(b"data: [DONE]\n\n")
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            h.close_connection = True

    @staticmethod
    def reset_connection(h) -> None:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
        h.close_connection = True


def _status(code, headers=None, error_code=None, message=None):
    def fault(wall, h, model, body, nth, prefill):
        h.json(code, {"error": {"message": message or f"the wall says {code}", "type": "wall_error",
                                "code": error_code or str(code)}}, headers)
    return fault


def _first_then_ok(first):
    def fault(wall, h, model, body, nth, prefill):
        if nth == 1:
            return first(wall, h, model, body, nth, prefill)
        wall.stream(h, model, body, prefill)
    return fault


def _silent(wall, h, model, body, nth, prefill):
    time.sleep(wall.timing.silence)
    wall.reset_connection(h)


def _flap(wall, h, model, body, nth, prefill):
    if time.monotonic() - wall.epoch < wall.timing.outage:
        return _status(503)(wall, h, model, body, nth, prefill)
    wall.stream(h, model, body, prefill)


FAULTS = {
    "fb-s01-429-retry-after": _first_then_ok(_status(429, {"Retry-After": "2"}, "rate_limit_exceeded")),
    "fb-s02-429-persistent": _status(429, None, "rate_limit_exceeded"),
    "fb-s03-500-then-200": _first_then_ok(_status(500)),
    "fb-s04-503-persistent": _status(503),
    "fb-s05-reset": _first_then_ok(lambda wall, h, *_: wall.reset_connection(h)),
    "fb-s06-no-response": _silent,
    "fb-s07-slow-ttft": lambda wall, h, m, b, n, p: wall.stream(h, m, b, p, first_delay=wall.timing.first_token_delay),
    "fb-s08-stream-cut": lambda wall, h, m, b, n, p: wall.stream(h, m, b, p, cut_after=40),
    "fb-s09-stream-stall": lambda wall, h, m, b, n, p: wall.stream(h, m, b, p, stall_after=20),
    "fb-s10-malformed-chunk": lambda wall, h, m, b, n, p: wall.stream(h, m, b, p, malformed_at=10),
    "fb-s11-no-done": lambda wall, h, m, b, n, p: wall.stream(h, m, b, p, done=False),
    "fb-s12-context-length": _status(400, None, "context_length_exceeded",
                                     "This model's maximum context length is 8192 tokens."),
    "fb-s13-content-filter": _status(400, None, "content_policy_violation",
                                     "The response was filtered due to the prompt triggering the content policy."),
    "fb-s14-stream-cut": lambda wall, h, m, b, n, p: wall.stream(h, m, b, p, cut_after=40),
    "fb-s15-flap": _flap,
    "fb-s16-503-persistent": _status(503),
}
