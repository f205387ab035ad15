"""Talking to the LangGraph server: JSON calls, streams, and what its assistants run."""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from urllib.parse import quote, urlencode

from urllib3.exceptions import HTTPError

from agent_portal import PortalError
from agent_portal.cache import TTLCache
from agent_portal.upstream import unreachable

from .settings import AgentSettings

log = logging.getLogger("agent_portal.langgraph")
UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
MISSING_REFRESH_SECONDS = 3.0
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")


def segment(value: str, kind: str) -> str:
    """Return ``value`` as one path segment, or raise 404 when it is not a plausible id (so no
    path can walk out of the route it came in on)."""
    pattern = NAME if kind == "assistant" else UUID
    if not isinstance(value, str) or not pattern.match(value) or value.strip(".") == "":
        raise PortalError(f"No such {kind}.", status=404, code=f"{kind}_not_found")
    return quote(value, safe="")


class Answer:
    """One JSON answer of the server: its status, body bytes and parsed JSON (None if not JSON)."""

    def __init__(self, status: int, body: bytes, headers=None):
        self.status, self.body, self.headers = status, body, headers or {}
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None


class LangGraphClient:
    """The LangGraph server at ``settings.url``: one connection pool, the portal's API key."""

    def __init__(self, portal, settings: AgentSettings):
        self.settings = settings
        self.base = settings.url
        self.pool = portal.pool.connection_from_url(self.base)
        self.prefix = self.base.split("://", 1)[1].partition("/")[2].rstrip("/")
        self.prefix = "/" + self.prefix if self.prefix else ""
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if settings.api_key:
            self.headers["x-api-key"] = settings.api_key
        self.graph_of_assistant = TTLCache(max_entries=5_000)
        self._graphs: list[str] | None = None
        self._graphs_at = 0.0
        self._lock = threading.Lock()
        self.reachable: bool | None = None
        self.last_error: str | None = None

    def headers_for(self, request_id: str | None) -> dict:
        headers = dict(self.headers)
        if request_id:
            headers["X-Request-ID"] = request_id
        return headers

    def open(self, method: str, path: str, body=None, params=None, timeout=None, stream=False,
             request_id=None):
        """Send one request; returns urllib3's response (unread when ``stream``).

        Raises a 502 or 504 :class:`PortalError` when the server cannot be reached in time.
        """
        url = self.prefix + path + (("?" + urlencode(params, doseq=True)) if params else "")
        payload = json.dumps(body).encode() if body is not None else None
        try:
            return self.pool.urlopen(method, url, body=payload, headers=self.headers_for(request_id),
                                     timeout=timeout or self.settings.timeout, preload_content=not stream,
                                     retries=False, redirect=False, assert_same_host=False)
        except HTTPError as exc:
            raise unreachable(exc, "The agent server") from exc

    def call(self, method: str, path: str, body=None, params=None, timeout=None, request_id=None) -> Answer:
        """Send one request and read its whole answer; a refusal of the portal's own key is 502."""
        response = self.open(method, path, body, params, timeout, request_id=request_id)
        answer = Answer(response.status, response.data, response.headers)
        refuse_bad_key(answer)
        return answer

    # --- which graph an assistant runs ------------------------------------------------------------
    def graph_id(self, assistant_id: str, request_id=None) -> str:
        """Return the graph ``assistant_id`` runs (an assistant UUID, or a graph's name).

        Raises 404 when the server knows no such assistant.
        """
        cached = self.graph_of_assistant.get(assistant_id)
        if cached is not None:
            return cached
        if UUID.match(assistant_id):
            answer = self.call("GET", f"/assistants/{segment(assistant_id, 'assistant')}", request_id=request_id)
            graph = (answer.json or {}).get("graph_id") if answer.status == 200 and isinstance(answer.json, dict) else None
        else:
            graph = assistant_id if assistant_id in self.graph_ids(refresh_if_missing=assistant_id) else None
        if not isinstance(graph, str):
            raise PortalError(f"No such assistant: {assistant_id}.", status=404, code="assistant_not_found")
        self.graph_of_assistant.put(assistant_id, graph, self.settings.refresh_seconds)
        return graph

    def forget_assistants(self) -> None:
        """Drop what is known of assistants and graphs (after an admin changed one)."""
        self.graph_of_assistant.clear()
        self._graphs_at = 0.0

    def graph_ids(self, refresh_if_missing: str | None = None) -> list[str]:
        """Return the graphs the server runs (from its assistants), refreshed every
        ``refresh_seconds``, or at once when ``refresh_if_missing`` is not among them."""
        age = time.monotonic() - self._graphs_at
        # an unknown name refreshes the list at most every few seconds: callers choose names
        missing = refresh_if_missing and refresh_if_missing not in (self._graphs or ()) and age > MISSING_REFRESH_SECONDS
        if self._graphs is None or age > self.settings.refresh_seconds or missing:
            with self._lock:
                self._refresh_graphs()
        return self._graphs or []

    def _refresh_graphs(self) -> None:
        try:
            answer = self.call("POST", "/assistants/search", {"limit": 1000})
            if answer.status != 200 or not isinstance(answer.json, list):
                raise ValueError(f"assistants search answered HTTP {answer.status}")
            graphs = sorted({a["graph_id"] for a in answer.json if isinstance(a, dict)
                             and isinstance(a.get("graph_id"), str)})
            self._graphs, self.reachable, self.last_error = graphs, True, None
        except (PortalError, ValueError) as exc:
            self.reachable, self.last_error = False, str(exc)
            log.warning("langgraph: graph list unavailable: %s", exc)
            self._graphs = self._graphs or []
        # a failure is retried after a few seconds, never on every request
        self._graphs_at = time.monotonic() - (0 if self.reachable else max(0.0, self.settings.refresh_seconds - 5))


def refuse_bad_key(answer: Answer) -> None:
    """Raise 502 ``upstream_auth_failed`` when the server refused the portal's own credentials
    (the caller's are fine: they were checked by the portal)."""
    if answer.status in (401, 403):
        detail = answer.json.get("detail") if isinstance(answer.json, dict) else None
        raise PortalError(f"The agent server refused the portal's API key: {detail or answer.status}.",
                          status=502, code="upstream_auth_failed", type="upstream_error")
