"""A local stand-in for Perplexica 1.12.x, following ../shared/CONTRACTS.md ("Perplexica").

`GET /api/providers` (the health check) and `POST /api/search`, streamed as newline-delimited
JSON under an SSE content type, or not streamed. Failures on purpose, chosen by the query:
"cut" stops the stream mid-answer without `done`; "slow" waits (between pieces when streamed);
"garbage" sends a line that is not JSON (HTML instead of the answer when not streamed); "explode" answers 500. ``legacy = True`` answers the providers in the
shape of older releases, ``down = True`` answers 503 to everything.
"""
from __future__ import annotations

import json
import time
from fake_http import JSONHandler, serve

PROVIDERS = {"providers": [{"id": "prov-openai", "name": "OpenAI",
                            "chatModels": [{"name": "GPT 4o mini", "key": "gpt-4o-mini"}],
                            "embeddingModels": [{"name": "Small", "key": "text-embedding-3-small"}]}]}
LEGACY_PROVIDERS = {"chatModelProviders": {"openai": {"gpt-4o-mini": {"displayName": "GPT 4o mini"}}},
                    "embeddingModelProviders": {}}
SOURCES = [{"content": "The portal fronts LiteLLM.", "metadata": {"title": "Portal docs", "url": "https://docs.example/portal"}},
           # older releases named the text pageContent: both appear
           {"pageContent": "Perplexica searches the web.", "metadata": {"title": "Perplexica", "url": "https://example.org/p"}}]


def answer_pieces(query: str) -> list[str]:
    return ["Here is ", "what I found ", f"about {query} [1][2]."]


class Handler(JSONHandler):
    server_version = "Perplexica-standin"

    def do_GET(self):
        if self.server.state["down"]:
            return self.reply(503, {"message": "unavailable"})
        if self.path == "/api/providers":
            return self.reply(200, LEGACY_PROVIDERS if self.server.state["legacy"] else PROVIDERS)
        return self.reply(404, {"message": "Not found"})

    def do_POST(self):
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if state["down"]:
            return self.reply(503, {"message": "unavailable"})
        if self.path != "/api/search":
            return self.reply(404, {"message": "Not found"})
        try:
            body = json.loads(raw)
        except ValueError:
            return self.reply(500, {"message": "An error has occurred."})
        state["requests"].append(body)
        if not body.get("sources") or not body.get("query"):
            return self.reply(400, {"message": "Missing sources or query"})
        query = body["query"]
        if "explode" in query:
            return self.reply(500, {"message": "Search error", "error": "the model provider failed"})
        if not body.get("stream"):
            if "slow" in query:
                time.sleep(1.0)
            if "garbage" in query:
                return self.reply(200, b"<html>Perplexica is updating</html>", "text/html")
            return self.reply(200, {"message": "".join(answer_pieces(query)), "sources": SOURCES})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache, no-transform")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        lines = [{"type": "init", "data": "Stream connected"}, {"type": "sources", "data": SOURCES}]
        lines += [{"type": "response", "data": piece} for piece in answer_pieces(query)]
        try:
            for index, line in enumerate(lines):
                if "slow" in query and index >= 2:
                    time.sleep(1.0)
                if "cut" in query and index == 3:
                    self.wfile.write(b"0\r\n\r\n")  # the stream just stops: no done
                    return
                if "garbage" in query and index == 3:
                    self._chunk(b"<html>oops</html>\n")
                    continue
                self._chunk(json.dumps(line).encode() + b"\n")
            self._chunk(json.dumps({"type": "done"}).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            state["cancelled"] += 1

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class FakePerplexica:
    def __init__(self):
        self.server, self.url = serve(Handler)
        self.server.state = {"legacy": False, "down": False, "requests": [], "cancelled": 0}

    @property
    def state(self) -> dict:
        return self.server.state

    def stop(self):
        self.server.shutdown()
