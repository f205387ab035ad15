"""A small, fast OpenAI-compatible upstream that can fail on purpose.

The model name picks the behaviour (the tests, the LiteLLM integration suite and the benchmark
all use it):

    echo             answers at once; streams ``max_tokens`` chunks (default 5), usage as OpenAI
    echo-ll          like echo, usage chunk shaped like LiteLLM's (choices [{index, delta: {}}], cost)
    echo-crlf        like echo, SSE lines ended with CRLF (sse-starlette does)
    slow-<ms>        like echo, ``<ms>`` milliseconds before each chunk
    reset-before     resets the connection without answering
    hang-before      answers nothing for 30 s
    status-<code>    answers that HTTP status with an OpenAI error body (429 adds Retry-After: 0)
    flaky-<code>     answers <code> on the first call for a given ``user``, then behaves as echo
    reset-mid        streams 2 chunks, then resets the connection
    stall-mid        streams 2 chunks, then goes silent for 30 s
    malformed-mid    streams 2 chunks, then a chunk that is not JSON
    role-stall       sends the role chunk (no content) at once, then nothing for 30 s
    error-mid        streams 2 chunks, then an in-band ``data: {"error": ...}`` event and ends (LiteLLM's
                     shape of a stream that broke upstream)
    no-done          streams every chunk and usage, then ends without ``[DONE]``
    long             100 chunks 50 ms apart; counts callers who leave early in ``disconnects``
    premium, pricey  like echo (targets of aliases with roles and prices in the tests)
    embed-16         POST /embeddings: a 16-number vector per input, made from the text's hash
    ctx-exceeded     400 context_length_exceeded (a fallback with a larger window may answer)
    content-filter   400 content_filter (never retried)
    status-429-bare  429 without Retry-After; status-429-long asks to wait 30 s; status-429-ms asks to
                     wait 0 ms in ``retry-after-ms`` only (OpenAI's header)
    slow-first-<ms>  like echo, ``<ms>`` milliseconds before the first chunk only
    garbage-mid      streams 2 chunks, then 5 that are not JSON, then ends without finishing
    no-prefill       like echo, but refuses (400 prefill_not_supported) to continue an assistant message
    odd-prefill      like echo, but refuses a prefill with 422 and words of its own (no known code)

Every answering model continues an answer it is given as a last assistant message (a prefill):
it counts the ``tokN`` already there and carries on from the next one.

Run alone: ``python tests/fake_upstream.py --port 9100``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler

from fake_http import QuietServer

MODELS = ["echo", "echo-ll", "echo-crlf", "slow-20", "slow-200", "reset-before", "hang-before", "status-400",
          "status-401", "status-429", "status-500", "status-503", "flaky-503", "flaky-429", "reset-mid",
          "stall-mid", "malformed-mid", "no-done", "long", "premium", "pricey", "embed-16",
          "ctx-exceeded", "content-filter", "status-429-bare", "status-429-long", "slow-first-1500",
          "garbage-mid", "no-prefill", "error-mid", "role-stall", "odd-prefill", "status-429-ms"]


def hashed_vector(text: str, size: int = 16) -> list[float]:
    """A fixed vector for ``text``: similar texts are not near each other, equal ones are equal."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(byte - 127.5) / 127.5 for byte in digest[:size]]


def completion_chunk(model: str, i: int, content: str) -> bytes:
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


class FakeUpstream:
    """The server and what it saw: request bodies, streams the caller left, calls per user."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.disconnects = 0
        self.completed_streams = 0
        self.seen_users: dict[str, int] = {}
        self.models = list(MODELS)
        self.connection_of_request: list[int] = []  # which accepted connection served each call
        self.connections = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with fake.lock:
                    fake.connections += 1
                    self.connection_number = fake.connections

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in fake.models]})
                elif self.path.startswith("/health"):
                    self._json(200, {"status": "healthy"})
                else:
                    self._json(404, {"error": {"message": "no such path", "type": "not_found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                    fake.connection_of_request.append(self.connection_number)
                model = body.get("model", "echo")
                if self.path.rstrip("/").endswith("/embeddings"):
                    return fake.embeddings(self, model, body)
                fake.answer(self, model, body)

            def _json(self, status, data, extra=None):
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        self.handler = Handler
        self.server = QuietServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.base_url = f"http://{host}:{self.port}/v1"
        self._thread = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "FakeUpstream":
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- behaviours --------------------------------------------------------------------------
    def embeddings(self, h, model: str, body: dict) -> None:
        """OpenAI's embeddings answer for ``embed-16``; 404 for a model without embeddings."""
        if model != "embed-16":
            return h._json(404, {"error": {"message": f"{model} has no embeddings", "type": "not_found"}})
        texts = body.get("input") if isinstance(body.get("input"), list) else [body.get("input") or ""]
        h._json(200, {"object": "list", "model": model, "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
                      "data": [{"object": "embedding", "index": i, "embedding": hashed_vector(str(t))}
                               for i, t in enumerate(texts)]})

    def answer(self, h, model: str, body: dict) -> None:
        user = str(body.get("user"))
        if model == "reset-before":
            return self._reset(h)
        if model == "hang-before":
            time.sleep(30)
            return self._reset(h)
        if model == "ctx-exceeded":
            return h._json(400, {"error": {"message": "This model's maximum context length is 16 tokens.",
                                           "type": "invalid_request_error", "code": "context_length_exceeded"}})
        if model == "content-filter":
            return h._json(400, {"error": {"message": "The response was filtered by the content filter.",
                                           "type": "invalid_request_error", "code": "content_filter"}})
        if model == "status-429-bare":
            return h._json(429, {"error": {"message": "slow down", "type": "rate_limit", "code": "429"}})
        if model == "status-429-ms":
            return h._json(429, {"error": {"message": "slow down", "type": "rate_limit", "code": "429"}},
                           {"retry-after-ms": "0"})
        if model == "status-429-long":
            return h._json(429, {"error": {"message": "slow down", "type": "rate_limit", "code": "429"}},
                           {"Retry-After": "30"})
        messages = body.get("messages") or []
        prefill = messages[-1].get("content") if messages and messages[-1].get("role") == "assistant" else None
        if model == "no-prefill" and prefill is not None:
            return h._json(400, {"error": {"message": "This model cannot continue an assistant message.",
                                           "type": "invalid_request_error", "code": "prefill_not_supported"}})
        if model == "odd-prefill" and prefill is not None:
            return h._json(422, {"detail": [{"loc": ["body", "messages", -1], "type": "value_error",
                                             "msg": "final message must have role user"}]})
        if model.startswith("status-"):
            return self._status(h, int(model.split("-")[1]))
        if model.startswith("flaky-"):
            with self.lock:
                count = self.seen_users.get(user + model, 0)
                self.seen_users[user + model] = count + 1
            if count == 0:
                return self._status(h, int(model.split("-")[1]))
        chunks = min(int(body.get("max_tokens") or 5), 1000)  # a real model stops somewhere too
        if model == "long":
            chunks = 100
        start = len(re.findall(r"tok\d+", str(prefill))) if prefill else 0
        if not body.get("stream"):
            if model.startswith("slow-first-"):
                time.sleep(int(model.split("-")[2]) / 1000)
            text = " ".join(f"tok{i}" for i in range(start, chunks))
            return h._json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7 + start, "completion_tokens": chunks - start,
                          "total_tokens": 7 + chunks}},
                {"x-litellm-call-id": "call-fake"} if model == "echo-ll" else None)
        self._stream(h, model, body, chunks, start)

    def _status(self, h, code: int) -> None:
        extra = {"Retry-After": "0"} if code == 429 else None
        h._json(code, {"error": {"message": f"fake upstream says {code}", "type": "fake_error",
                                 "code": str(code)}}, extra)

    def _reset(self, h) -> None:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
        h.close_connection = True

    def _stream(self, h, model: str, body: dict, chunks: int, start: int = 0) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("x-litellm-call-id", f"call-{model}")
        h.end_headers()
        delay = 0.0
        if model.startswith("slow-") and not model.startswith("slow-first-"):
            delay = int(model.split("-")[1]) / 1000
        elif model == "long":
            delay = 0.05

        def send(data: bytes) -> None:
            if model == "echo-crlf":
                data = data.replace(b"\n", b"\r\n")
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        try:
            if model == "role-stall":
                role = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
                send(b": keep-alive\n\n" + b"data: " + json.dumps(role).encode() + b"\n\n")
                time.sleep(30)
                return self._reset(h)
            for i in range(start, chunks):
                if delay:
                    time.sleep(delay)
                if i == start and model.startswith("slow-first-"):
                    time.sleep(int(model.split("-")[2]) / 1000)
                if i == 2 and model == "garbage-mid":
                    for _ in range(5):
                        send(b"data: {not json at all\n\n")
                    h.wfile.write(b"0\r\n\r\n")
                    h.wfile.flush()
                    return
                if i == 2 and model == "reset-mid":
                    return self._reset(h)
                if i == 2 and model == "stall-mid":
                    time.sleep(30)
                    return self._reset(h)
                if i == 2 and model == "error-mid":
                    error = {"error": {"message": "litellm.APIConnectionError: upstream stream broke",
                                       "type": None, "param": None, "code": "500"}}
                    send(b"data: " + json.dumps(error).encode() + b"\n\n")
                    h.wfile.write(b"0\r\n\r\n")
                    h.wfile.flush()
                    return
                if i == 2 and model == "malformed-mid":
                    send(b"data: {this is not json\n\n")
                    continue
                send(completion_chunk(model, i, f"tok{i} "))
            final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                     "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            send(b"data: " + json.dumps(final).encode() + b"\n\n")
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 7 + start, "completion_tokens": chunks - start, "total_tokens": 7 + chunks}
                if model == "echo-ll":
                    tail = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                            "choices": [{"index": 0, "delta": {}}], "usage": {**usage, "cost": 0.0042}}
                else:
                    tail = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                            "choices": [], "usage": usage}
                send(b"data: " + json.dumps(tail).encode() + b"\n\n")
            if model != "no-done":
                send(b"data: [DONE]\n\n")
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
            with self.lock:
                self.completed_streams += 1
        except (BrokenPipeError, ConnectionResetError, OSError):
            with self.lock:
                self.disconnects += 1
            h.close_connection = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    fake = FakeUpstream(args.host, args.port)
    print(f"fake upstream on {fake.base_url}", flush=True)
    fake.server.serve_forever()


if __name__ == "__main__":
    main()
