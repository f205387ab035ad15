"""An OpenAI-compatible upstream: where to send chat, how to attribute it, which models it has."""
from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlsplit

log = logging.getLogger("agent_portal.upstream")


def timed_out(exc: Exception) -> bool:
    """Return True when ``exc`` (urllib3's, or a socket's) says a request ran out of time."""
    return "timeout" in type(exc).__name__.lower() or "timed out" in str(exc)


def unreachable(exc: Exception, service: str):
    """Return the caller's :class:`PortalError` for ``service`` not answering a request that
    raised ``exc`` (urllib3's): 504 ``upstream_timeout`` when it timed out, else 502
    ``upstream_unreachable``."""
    from .errors import PortalError

    late = timed_out(exc)
    return PortalError(f"{service} {'did not answer in time' if late else 'cannot be reached'}"
                       f" ({type(exc).__name__}).", status=504 if late else 502,
                       code="upstream_timeout" if late else "upstream_unreachable", type="upstream_error")


class UpstreamFailure(Exception):
    """Every attempt on every fallback failed before the first byte (or a backend refused the
    call outright); ``status`` and ``code`` are what the caller is answered."""

    def __init__(self, status: int, message: str, code: str, headers=None, body=None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = body


class OpenAIUpstream:
    """A chat backend speaking OpenAI's API at ``base_url`` (which ends before ``/chat``).

    Models come from ``models`` when given, else from ``GET {base_url}/models``, refreshed in the
    background every ``refresh_seconds`` so that a model added upstream appears on its own.
    """

    kind = "openai_compat"

    def __init__(self, portal, name: str, base_url: str, api_key: str | None = None,
                 headers: dict | None = None, models: list | None = None,
                 refresh_seconds: float = 30.0, timeout_seconds: float = 3.0):
        self.portal = portal
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.chat_url = self.base_url + "/chat/completions"
        # the keep-alive connections to this host, looked up once instead of on every call
        self.chat_client = portal.upstream_clients.client(self.chat_url)
        self.chat_path = urlsplit(self.chat_url).path
        self.models_url = self.base_url + "/models"
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.static_models = list(models) if models else None
        self.refresh_seconds = refresh_seconds
        self.timeout_seconds = timeout_seconds
        self._models: list[str] | None = None
        self._loaded_at = 0.0
        self._refreshing = False
        self._lock = threading.Lock()
        self.reachable: bool | None = None
        self.last_error: str | None = None

    # --- models -------------------------------------------------------------------------------
    def model_ids(self) -> list[str]:
        """Return the upstream model names this backend serves (possibly slightly stale)."""
        if self.static_models is not None:
            return self.static_models
        if self._models is None:
            self.refresh()
        elif time.monotonic() - self._loaded_at > self.refresh_seconds and not self._refreshing:
            self._refreshing = True
            threading.Thread(target=self.refresh, daemon=True).start()
        return self._models or []

    def refresh(self) -> list[str]:
        """Fetch the model list now; returns it (the old one, or [], when the upstream fails)."""
        try:
            response = self.portal.http.get(self.models_url, headers=self.headers,
                                            timeout=self.timeout_seconds)
            response.raise_for_status()
            data = response.json().get("data")
            ids = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
            with self._lock:
                self._models, self._loaded_at = ids, time.monotonic()
            self.reachable, self.last_error = True, None
        except Exception as exc:
            self.reachable, self.last_error = False, f"{type(exc).__name__}: {exc}"
            with self._lock:
                # retry sooner than a full period, but never on every request
                self._loaded_at = time.monotonic() - self.refresh_seconds + min(5.0, self.refresh_seconds)
                if self._models is None:
                    self._models = []
            log.warning("backend %s: model list unavailable: %s", self.name, exc)
        finally:
            self._refreshing = False
        return self._models or []

    def prefill_support(self, model: str) -> bool | None:
        """Return whether ``model`` takes a prefill (an answer to continue, as a last assistant
        message), as this backend knows it; None when it does not say."""
        return None

    # --- chat ------------------------------------------------------------------------------------
    def send_chat(self, body: bytes, headers: dict, timeout, stream: bool):
        """Send one chat completion request within ``timeout`` (urllib3's ``Timeout``: connect,
        and read until the first byte); returns the answer (its body unread when ``stream``):
        an :class:`~agent_portal.upstream_client.UpstreamResponse`.

        A backend that speaks another protocol overrides this and returns an object with the same
        surface (``status``, ``headers``, ``data``, ``read1``, ``close``, ``release_conn``,
        ``connection``) carrying OpenAI's chat format.
        """
        return self.chat_client.request("POST", self.chat_path, body, headers, timeout.connect_timeout,
                                        timeout.read_timeout, preload=not stream)

    # --- attribution --------------------------------------------------------------------------
    def attribute(self, payload: dict, actor, request_id: str, session_id: str | None) -> None:
        """Put the caller into the outgoing body (OpenAI's ``user`` field)."""
        payload["user"] = actor.id

    def request_headers(self, request_id: str, actor, session_id: str | None = None) -> dict:
        """Return the headers for one chat call, with the portal's request id."""
        headers = dict(self.headers)
        headers["X-Request-ID"] = request_id
        return headers

    def upstream_call_id(self, request_id: str, response) -> str | None:
        """Return the id the upstream files this call under (None: a plain OpenAI-compatible
        server names none; a backend that knows its upstream's header overrides this)."""
        return None

    def passed_headers(self, response) -> dict:
        """Return the headers of the upstream's answer the caller gets too (none here)."""
        return {}

    def reported_cost(self, response) -> float | None:
        """Return the cost the upstream's answer headers report (None: they say none)."""
        return None
