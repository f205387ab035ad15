"""The MCP servers behind the portal, as a client speaks to them: streamable HTTP, or a stdio
child process the portal starts. Both answer :meth:`request` the same way.

The portal keeps one upstream session per server and worker (initialized on first use, again
when the server forgets it) and speaks the initialize handshake's protocol. Upstream
credentials (``headers``, ``env``) stay here: nothing of them reaches a caller.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time

import urllib3
from urllib3.exceptions import HTTPError

from agent_portal.sse import close_upstream
from agent_portal.upstream import timed_out

from .jsonrpc import INTERNAL_ERROR, REQUEST_TIMEOUT, UPSTREAM_ERROR, RPCError, sse_messages
from .settings import ServerSettings

HANDSHAKE_FAILURE_SECONDS = 5.0  # a server whose handshake failed this recently fails at once, not in turn
PROTOCOL_VERSION = "2025-11-25"  # the newest revision reached by the initialize handshake
CLIENT_INFO = {"name": "agent-portal", "version": "1"}
# what a stdio child gets of the portal's environment (never its secrets); the server's env adds to it
CHILD_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")


def _down(server: str, why: str) -> RPCError:
    return RPCError(UPSTREAM_ERROR, f"The MCP server `{server}` is not usable: {why}.", {"code": "upstream_unreachable"})


def _timed_out(server: str, seconds: float) -> RPCError:
    return RPCError(REQUEST_TIMEOUT, f"The MCP server `{server}` did not answer within {seconds:g} s "
                    f"(plugins.mcp.servers.{server}.timeout_seconds).", {"code": "upstream_timeout"})


def _failed(server: str, exc: Exception, timeout: float, why: str) -> RPCError:
    """Return the caller's error for a request to ``server`` that raised ``exc``."""
    return _timed_out(server, timeout) if timed_out(exc) else _down(server, why)


def cancelled() -> RPCError:
    """Return the error of a call given up because its caller left (or the portal stopped)."""
    return RPCError(UPSTREAM_ERROR, "The call was cancelled.", {"code": "cancelled"})


def _answer_of(message: dict, server: str):
    """Return the result of an upstream answer; its error passed on as the caller's error."""
    if "error" in message:
        error = message["error"] if isinstance(message["error"], dict) else {}
        code = error.get("code") if isinstance(error.get("code"), int) else INTERNAL_ERROR
        raise RPCError(code, str(error.get("message") or f"The MCP server `{server}` failed."),
                       {"code": "upstream_error", "server": server})
    if not isinstance(message.get("result"), dict):
        raise RPCError(UPSTREAM_ERROR, f"The MCP server `{server}` answered without a result.",
                       {"code": "upstream_malformed"})
    return message["result"]


class Handshake:
    """One handshake at a time per server; a failed one is remembered for a few seconds, so callers
    queued behind a server that hangs get its error at once instead of each waiting out a timeout."""

    def __init__(self, server: str):
        self.server = server
        self.lock = threading.Lock()
        self.failure: tuple[float, RPCError] | None = None

    @contextlib.contextmanager
    def turn(self, timeout: float):
        """Hold the server's handshake turn (or raise its recent failure, or a timeout)."""
        if not self.lock.acquire(timeout=timeout):
            raise _timed_out(self.server, timeout)
        try:
            if self.failure is not None and time.monotonic() - self.failure[0] < HANDSHAKE_FAILURE_SECONDS:
                raise self.failure[1]
            try:
                yield
            except RPCError as error:
                self.failure = (time.monotonic(), error)
                raise
            self.failure = None
        finally:
            self.lock.release()


class Pending:
    """One request under way upstream: its answer, the notifications about it, a way to cancel it."""

    def __init__(self, request_id: int, on_message=None):
        self.id = request_id
        self.on_message = on_message or (lambda message: None)
        self.response = None  # HTTP: the open response, closed to cancel
        self.cancelled = False


class HttpServer:
    """A streamable HTTP MCP server."""

    def __init__(self, portal, settings: ServerSettings, connect_timeout: float, max_result_bytes: int):
        self.settings, self.name = settings, settings.name
        self.pool = portal.pool.connection_from_url(settings.url)
        self.path = "/" + settings.url.split("://", 1)[1].partition("/")[2]
        self.connect_timeout, self.max_result_bytes = connect_timeout, max_result_bytes
        self.ids = itertools.count(1)
        self.handshake = Handshake(settings.name)
        self.session_id: str | None = None
        self.protocol: str | None = None
        self.server_info: dict = {}

    def request(self, method: str, params: dict | None, pending: Pending | None = None, timeout: float | None = None):
        """Return the result of ``method`` on the server; raises :class:`RPCError` for its
        error answer, a failure to reach it, garbage, or no answer within ``timeout``."""
        timeout = timeout or self.settings.timeout
        session = self._session(timeout)
        pending = pending or Pending(next(self.ids))
        message = {"jsonrpc": "2.0", "id": pending.id, "method": method, **({"params": params} if params else {})}
        try:
            return self._exchange(message, pending, timeout)
        except _SessionGone:
            if self.session_id == session:
                self.protocol = None
            self._session(timeout)
            return self._exchange(message, pending, timeout)

    def cancel(self, pending: Pending, reason: str) -> None:
        """Stop waiting for ``pending`` and tell the server (best effort)."""
        pending.cancelled = True
        if pending.response is not None:
            close_upstream(pending.response)
        try:
            self._post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": pending.id, "reason": reason}}, 2.0).drain_conn()
        except (HTTPError, OSError):
            pass

    def close(self) -> None:
        """End the upstream session (DELETE, best effort)."""
        if self.session_id:
            try:
                self.pool.urlopen("DELETE", self.path, headers=self._headers(), timeout=2.0, retries=False,
                                  assert_same_host=False).release_conn()
            except (HTTPError, OSError):
                pass

    # --- the handshake and one exchange -----------------------------------------------------
    def _session(self, timeout: float) -> str | None:
        if self.protocol is not None:
            return self.session_id
        with self.handshake.turn(timeout):
            if self.protocol is None:
                self._initialize(timeout)
            return self.session_id

    def _initialize(self, timeout: float) -> None:
        self.session_id = None
        message = {"jsonrpc": "2.0", "id": next(self.ids), "method": "initialize",
                   "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}}
        answer = self._exchange(message, Pending(message["id"]), timeout, keep_session=True)
        self.server_info = answer.get("serverInfo") if isinstance(answer.get("serverInfo"), dict) else {}
        self.protocol = str(answer.get("protocolVersion") or PROTOCOL_VERSION)
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout).drain_conn()

    def _headers(self) -> dict:
        headers = {**self.settings.headers, "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream"}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol:
            headers["MCP-Protocol-Version"] = self.protocol
        return headers

    def _post(self, message: dict, timeout: float):
        try:
            return self.pool.urlopen("POST", self.path, body=json.dumps(message).encode(), headers=self._headers(),
                                     timeout=urllib3.Timeout(connect=min(self.connect_timeout, timeout), read=timeout),
                                     preload_content=False, retries=False, redirect=False, assert_same_host=False)
        except HTTPError as exc:
            raise _failed(self.name, exc, timeout, type(exc).__name__) from None

    def _exchange(self, message: dict, pending: Pending, timeout: float, keep_session: bool = False):
        deadline = time.monotonic() + timeout
        response = pending.response = self._post(message, timeout)
        whole = False  # the body read to its end: the connection goes back to the pool
        try:
            if response.status == 404 and self.session_id and not keep_session:
                raise _SessionGone()
            if keep_session:
                self.session_id = response.headers.get("Mcp-Session-Id")
            kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if response.status != 200 or kind not in ("application/json", "text/event-stream"):
                body = response.read(2000, decode_content=True)
                try:  # a JSON-RPC error sent with an HTTP error status is still the server's word
                    return _answer_of(json.loads(body), self.name)
                except (ValueError, AttributeError):
                    raise _down(self.name, f"it answered HTTP {response.status} ({kind or 'no type'})") from None
            if kind == "application/json":
                body = _read_bounded(response, self.max_result_bytes, self.name)
                whole = True
                try:
                    answer = json.loads(body)
                except ValueError:
                    raise RPCError(UPSTREAM_ERROR, f"The MCP server `{self.name}` answered with something other "
                                   "than JSON.", {"code": "upstream_malformed"}) from None
                return _answer_of(answer if isinstance(answer, dict) else {}, self.name)
            for event in sse_messages(_chunks(response, deadline, self.name, timeout), self.max_result_bytes):
                if event.get("id") == pending.id and ("result" in event or "error" in event):
                    return _answer_of(event, self.name)
                if "method" in event and "id" not in event:
                    pending.on_message(event)
            if pending.cancelled:
                raise cancelled()
            raise RPCError(UPSTREAM_ERROR, f"The MCP server `{self.name}` ended its stream without an answer.",
                           {"code": "upstream_incomplete"})
        except (HTTPError, OSError) as exc:
            if pending.cancelled:
                raise cancelled() from None
            raise _failed(self.name, exc, timeout, f"the connection broke ({type(exc).__name__})") from None
        finally:
            pending.response = None
            response.release_conn() if whole else close_upstream(response)


class _SessionGone(Exception):
    """The server forgot the session (404): initialize again and retry once."""


def _read_bounded(response, limit: int, server: str) -> bytes:
    body = response.read(limit + 1, decode_content=True)
    if len(body) > limit:
        raise RPCError(UPSTREAM_ERROR, f"The MCP server `{server}`'s answer is over {limit} bytes "
                       "(plugins.mcp.max_result_bytes).", {"code": "result_too_large"})
    return body


def _chunks(response, deadline: float, server: str, timeout: float):
    """Yield the stream's bytes as they come, until ``deadline`` (a server that only pings
    forever is cut there too)."""
    while True:
        if time.monotonic() > deadline:
            raise _timed_out(server, timeout)
        chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
        if not chunk:
            return
        yield chunk
