"""Talking to Perplexica 1.12.x: the providers check and one search."""
from __future__ import annotations

import json
import time

from urllib3.exceptions import HTTPError

from agent_portal import PortalError
from agent_portal.upstream import unreachable

from .settings import SearchSettings

EXPECTED = "Perplexica 1.12.x (GET /api/providers → {providers: [{id, name, chatModels, embeddingModels}]})"


class WrongVersion(PortalError):
    """Perplexica answered, in a shape the version spoken here does not have."""


def providers_problem(body) -> str | None:
    """Return what is wrong with an ``/api/providers`` answer for the version spoken here, or None."""
    providers = body.get("providers") if isinstance(body, dict) else None
    if not isinstance(providers, list):
        return f"it answers /api/providers in another shape; this plugin speaks {EXPECTED}"
    for provider in providers:
        if not isinstance(provider, dict) or not isinstance(provider.get("id"), str) \
                or not isinstance(provider.get("chatModels"), list) \
                or not isinstance(provider.get("embeddingModels"), list):
            return f"a provider in /api/providers lacks id, chatModels or embeddingModels; expected {EXPECTED}"
    return None


def missing_models(body: dict, settings: SearchSettings) -> list[str]:
    """Return the configured models the server does not offer."""
    offered = {(p["id"], m.get("key"), kind) for p in body["providers"]
               for kind in ("chatModels", "embeddingModels") for m in p[kind] if isinstance(m, dict)}
    wanted = [(settings.chat_model, "chatModels", "chat_model"),
              (settings.embedding_model, "embeddingModels", "embedding_model")]
    return [f"{name} {model['providerId']}/{model['key']}" for model, kind, name in wanted
            if (model["providerId"], model["key"], kind) not in offered]


def normalize_sources(raw) -> list[dict]:
    """Return Perplexica's search results as ``[{title, url, snippet}]`` (its text is
    ``content``, or ``pageContent`` in older releases)."""
    sources = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        text = item.get("content", item.get("pageContent"))
        sources.append({"title": str(metadata.get("title") or ""), "url": str(metadata.get("url") or ""),
                        "snippet": str(text or "")[:500]})
    return sources


class PerplexicaClient:
    """Perplexica at ``settings.url``: one connection pool."""

    def __init__(self, portal, settings: SearchSettings):
        self.settings = settings
        self.pool = portal.pool.connection_from_url(settings.url)
        self.prefix = "/" + settings.url.split("://", 1)[1].partition("/")[2].strip("/")
        self.prefix = "" if self.prefix == "/" else self.prefix
        self.reachable: bool | None = None
        self.last_error: str | None = None
        self.failed_at: float | None = None  # monotonic, the last time it was found unusable

    def failed(self, why: str) -> None:
        """Note that the server was found unusable now, and why."""
        self.reachable, self.last_error, self.failed_at = False, why, time.monotonic()

    def down_lately(self, seconds: float) -> bool:
        """Return True when the server was last found unusable, less than ``seconds`` ago."""
        return self.reachable is False and self.failed_at is not None and time.monotonic() - self.failed_at < seconds

    def providers(self) -> dict:
        """Return ``/api/providers`` parsed; raises PortalError when unreachable, failing or
        answering in a shape this plugin does not speak."""
        response = self._open("GET", "/api/providers", None, self.settings.timeout, stream=False)
        try:
            body = json.loads(response.data)
        except ValueError:
            body = None
        if response.status != 200:
            self.failed(f"it answered HTTP {response.status}")
            raise PortalError(f"Perplexica answered HTTP {response.status}.", status=502, code="upstream_error",
                              type="upstream_error")
        problem = providers_problem(body)
        if problem:
            self.failed(problem)
            raise WrongVersion(f"Perplexica is not usable: {problem}.", status=502, code="upstream_wrong_version",
                               type="upstream_error")
        self.reachable, self.last_error, self.failed_at = True, None, None
        return body

    def search_body(self, query: str, sources: list, mode: str, history: list, stream: bool) -> dict:
        return {"chatModel": self.settings.chat_model, "embeddingModel": self.settings.embedding_model,
                "sources": list(sources), "query": query, "optimizationMode": mode,
                "history": history, "stream": stream}

    def search(self, body: dict, stream: bool, request_id: str | None = None, timeout=None):
        """Send one search; returns urllib3's response (unread when ``stream``)."""
        return self._open("POST", "/api/search", body, timeout or
                          (self.settings.stream_timeout if stream else self.settings.timeout), stream, request_id)

    def _open(self, method, path, body, timeout, stream, request_id=None):
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            response = self.pool.urlopen(method, self.prefix + path, body=json.dumps(body).encode() if body else None,
                                         headers=headers, timeout=timeout, preload_content=not stream,
                                         retries=False, redirect=False, assert_same_host=False)
            self.reachable, self.failed_at = True, None  # it answered (what it said is the caller's to judge)
            return response
        except HTTPError as exc:
            self.failed(f"{type(exc).__name__}: {exc}")
            raise unreachable(exc, "Perplexica") from exc
