"""The job worker's small loopback service, one per host: query embeddings and searches.

Serving workers never import torch, hold a model or open the vector store (whose native calls
would block their event loop and double their memory): a query's embedding or a search is an
HTTP call to the host's worker (``embedder.service_url``). Queries go before ingestion: the
worker embeds an upload in small batches and lets every waiting query through between two of
them. Vectors travel as little-endian float32s, turned into lists in C on both sides.
"""
from __future__ import annotations

import json
import logging
import threading
from array import array
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from agent_portal import PortalError

from .stores import Hit

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


class WorkerService:
    """The job worker's loopback service, answered with its ``state``'s embedder and store:
    ``POST /embed`` (``{"texts": [...]}`` → float32s, ``X-Dimensions``), ``POST /search``
    (``{"query", "k", "collections"}`` → ``{"hits": [...]}``, the query embedded first) and
    ``GET /health`` (the model, whether it is loaded, the store's chunks)."""

    def __init__(self, state, url: str, bind: str | None = None):
        self.state = state
        parts = urlsplit(url if bind is None else f"http://{bind}")
        self.host, self.port = parts.hostname, parts.port
        self.server = None

    def start(self) -> bool:
        """Listen in a thread of its own; False when another worker on this host serves it."""
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms wait

            def log_message(self, *args):  # the worker logs what matters itself
                pass

            def _answer(self, status: int, body: bytes, kind: str = "application/json", **headers):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != "/health":
                    return self._answer(404, b"{}")
                try:
                    body = {"status": "up", "model": state.embedder.model_name,
                            "loaded": getattr(state.embedder, "loaded", True), "chunks": state.store().count()}
                except Exception as exc:
                    body = {"status": "down", "detail": f"{type(exc).__name__}: {exc}"}
                self._answer(200, json.dumps(body).encode())

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if self.path not in ("/embed", "/search") or not 0 < length <= MAX_BODY:
                    return self._answer(400, b'{"error": "POST /embed or /search with a JSON body"}')
                try:
                    body = json.loads(self.rfile.read(length))
                    if self.path == "/embed":
                        texts = body["texts"]
                        if not (isinstance(texts, list) and 0 < len(texts) <= MAX_TEXTS
                                and all(isinstance(t, str) for t in texts)):
                            raise ValueError("texts: a list of 1 to 2048 strings")
                    elif not (isinstance(body.get("query"), str) and isinstance(body.get("k"), int)
                              and isinstance(body.get("collections"), list)):
                        raise ValueError("query (a string), k (an integer) and collections (a list)")
                except (ValueError, KeyError, TypeError) as exc:
                    return self._answer(400, json.dumps({"error": str(exc)}).encode())
                try:
                    if self.path == "/embed":
                        vectors = state.embedder.embed(texts, query=True)
                        return self._answer(200, pack(vectors), "application/octet-stream",
                                            **{"X-Dimensions": str(len(vectors[0]) if vectors else 0)})
                    vector = state.embedder.embed([body["query"]], query=True)[0]
                    hits = state.store().query(vector, body["query"], body["k"], [str(c) for c in body["collections"]],
                                               state.settings.search_mode)
                    self._answer(200, json.dumps({"hits": [asdict(h) for h in hits]}).encode())
                except Exception as exc:  # the model or the store failed: say so, keep serving
                    log.exception("documents: the worker's service failed")
                    self._answer(503, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())

        try:
            self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            log.info("documents: %s:%s is taken (%s): another worker on this host serves queries",
                     self.host, self.port, exc)
            return False
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="documents-service", daemon=True).start()
        log.info("documents: queries served on http://%s:%s", self.host, self.port)
        return True

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class WorkerClient:
    """How a serving worker reaches the host's job worker (``embedder.service_url``): embeddings
    and searches, over loopback. Raises a 503 naming the fix when no worker answers."""

    def __init__(self, portal, url: str):
        self.portal = portal
        self.url = url

    def _post(self, path: str, body: dict):
        try:
            response = self.portal.pool.request("POST", self.url + path, body=json.dumps(body),
                                                headers={"Content-Type": "application/json"},
                                                timeout=60.0, retries=False)
        except Exception as exc:
            raise PortalError(f"The documents worker at {self.url} cannot be reached ({type(exc).__name__}): "
                              "start `agent-portal worker` on this host.", status=503,
                              code="documents_worker_unavailable") from None
        if response.status != 200:
            raise PortalError(f"The documents worker answered HTTP {response.status}: "
                              f"{response.data[:300].decode('utf-8', 'replace')}", status=503,
                              code="documents_worker_unavailable")
        return response

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Return one unit vector per text."""
        response = self._post("/embed", {"texts": texts})
        vectors = unpack(response.data, int(response.headers.get("X-Dimensions") or 0) or 1)
        if len(vectors) != len(texts):
            raise PortalError("The documents worker answered the wrong number of vectors.", status=502,
                              code="upstream_error", type="upstream_error")
        return vectors

    def search(self, query: str, k: int, collection_ids: list[str]) -> list[Hit]:
        """Return the ``k`` chunks nearest ``query`` among ``collection_ids`` (best first)."""
        if not collection_ids:
            return []
        answer = json.loads(self._post("/search", {"query": query, "k": k, "collections": collection_ids}).data)
        return [Hit(**hit) for hit in answer["hits"]]

    def health(self) -> dict:
        """Return the worker's own word on its model and store."""
        try:
            response = self.portal.pool.request("GET", self.url + "/health", timeout=5.0, retries=False)
            return json.loads(response.data)
        except Exception as exc:
            return {"status": "down", "detail": f"the documents worker at {self.url} does not answer "
                                                f"({type(exc).__name__}): start `agent-portal worker`"}
