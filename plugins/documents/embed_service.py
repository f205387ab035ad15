"""The local embedding model as a small service of the job worker, one per host.

Serving workers never import torch or hold a model: a query's embedding is a loopback HTTP call
to the worker that holds it (``embedder.service_url``). Queries go before ingestion: the worker
embeds an upload in small batches and lets every waiting query through between two of them.
Vectors travel as little-endian float32s, which both sides turn into lists in C, never as JSON.
"""
from __future__ import annotations

import json
import logging
import threading
from array import array
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from agent_portal import PortalError

log = logging.getLogger("agent_portal.documents")
MAX_TEXTS = 2048
MAX_BODY = 64 * 1024 * 1024


class QueriesFirst:
    """One model call at a time; a waiting query goes before a waiting ingestion batch."""

    def __init__(self):
        self._cond = threading.Condition()
        self._busy = False
        self._queries = 0

    def run(self, func, query: bool):
        """Return ``func()``, run when the model is free (and no query waits, for a batch)."""
        with self._cond:
            if query:
                self._queries += 1
            try:
                while self._busy or (not query and self._queries):
                    self._cond.wait()
            finally:
                if query:
                    self._queries -= 1
            self._busy = True
        try:
            return func()
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


def pack(vectors: list[list[float]]) -> bytes:
    """Return ``vectors`` as float32s, one after another."""
    flat = array("f", [x for vector in vectors for x in vector])
    return flat.tobytes()


def unpack(data: bytes, dimensions: int) -> list[list[float]]:
    """Return the vectors of ``dimensions`` floats packed in ``data``."""
    flat = array("f")
    flat.frombytes(data)
    values = flat.tolist()
    return [values[i:i + dimensions] for i in range(0, len(values), dimensions)]


class EmbeddingService:
    """``POST /embed`` (``{"texts": [...]}`` → float32s, ``X-Dimensions``) and ``GET /health``
    on ``host:port``, answered by ``embedder`` (a :class:`LocalEmbedder`) as queries."""

    def __init__(self, embedder, url: str, bind: str | None = None):
        self.embedder = embedder
        parts = urlsplit(url if bind is None else f"http://{bind}")
        self.host, self.port = parts.hostname, parts.port
        self.server = None

    def start(self) -> bool:
        """Listen in a thread of its own; False when another worker on this host serves it."""
        embedder = self.embedder

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # the worker logs what matters itself
                pass

            def _answer(self, status: int, body: bytes, kind: str, **headers):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != "/health":
                    return self._answer(404, b"{}", "application/json")
                body = {"status": "up", "model": embedder.model_name, "loaded": embedder.loaded}
                self._answer(200, json.dumps(body).encode(), "application/json")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if self.path != "/embed" or not 0 < length <= MAX_BODY:
                    return self._answer(400, b'{"error": "POST /embed with a JSON body"}', "application/json")
                try:
                    texts = json.loads(self.rfile.read(length))["texts"]
                    if not (isinstance(texts, list) and 0 < len(texts) <= MAX_TEXTS
                            and all(isinstance(t, str) for t in texts)):
                        raise ValueError("texts: a list of 1 to 2048 strings")
                except (ValueError, KeyError, TypeError) as exc:
                    return self._answer(400, json.dumps({"error": str(exc)}).encode(), "application/json")
                try:
                    vectors = embedder.embed(texts, query=True)
                except Exception as exc:  # the model failed to load or run: say so, keep serving
                    log.exception("documents: the embedding service failed")
                    return self._answer(503, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode(),
                                        "application/json")
                self._answer(200, pack(vectors), "application/octet-stream",
                             **{"X-Dimensions": str(len(vectors[0]) if vectors else embedder.dimensions)})

        try:
            self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            log.info("documents: %s:%s is taken (%s): another worker on this host serves query embeddings",
                     self.host, self.port, exc)
            return False
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="embedding-service", daemon=True).start()
        log.info("documents: query embeddings served on http://%s:%s", self.host, self.port)
        return True

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class ServiceEmbedder:
    """What a serving worker embeds with when the model is local: the host's job worker, over
    loopback. Raises a 503 naming the fix when no worker answers."""

    def __init__(self, portal, model: str, url: str, dimensions: int = 384):
        self.portal = portal
        self.model_name = model
        self.url = url
        self.dimensions = dimensions

    def embed(self, texts: list[str], query: bool = True) -> list[list[float]]:
        """Return one unit vector per text."""
        try:
            response = self.portal.pool.request("POST", self.url + "/embed", body=json.dumps({"texts": texts}),
                                                headers={"Content-Type": "application/json"},
                                                timeout=60.0, retries=False)
        except Exception as exc:
            raise PortalError(f"The embedding service at {self.url} cannot be reached ({type(exc).__name__}): "
                              "start `agent-portal worker` on this host.", status=503,
                              code="embedder_unavailable") from None
        if response.status != 200:
            raise PortalError(f"The embedding service answered HTTP {response.status}: "
                              f"{response.data[:300].decode('utf-8', 'replace')}", status=503,
                              code="embedder_unavailable")
        dimensions = int(response.headers.get("X-Dimensions") or self.dimensions)
        vectors = unpack(response.data, dimensions)
        if len(vectors) != len(texts):
            raise PortalError("The embedding service answered the wrong number of vectors.", status=502,
                              code="upstream_error", type="upstream_error")
        return vectors
