"""An MCP server the portal starts as a child process and speaks to over its stdin and stdout
(newline-delimited JSON-RPC), one child per serving worker, started on first use and again
after it dies."""
from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import subprocess
import threading
import time

from .jsonrpc import RPCError
from .settings import ServerSettings
from .upstream import (CHILD_ENV, CLIENT_INFO, PROTOCOL_VERSION, Handshake, Pending, _answer_of, _down,
                       _timed_out, cancelled)

log = logging.getLogger("agent_portal.mcp")
RESTART_PAUSE_SECONDS = 1.0  # a child that keeps dying is not started again more often than this


class StdioServer:
    """A stdio MCP server, as a child of this worker."""

    def __init__(self, settings: ServerSettings, max_result_bytes: int):
        self.settings, self.name = settings, settings.name
        self.max_result_bytes = max_result_bytes
        self.ids = itertools.count(1)
        self.handshake = Handshake(settings.name)  # one start (and its handshake) at a time
        self.write_lock = threading.Lock()  # one line at a time on the child's stdin
        self.ready = False  # the child answered the handshake
        self.child: subprocess.Popen | None = None
        self.waiting: dict[int, queue.Queue] = {}
        self.started_at = 0.0
        self.server_info: dict = {}

    def request(self, method: str, params: dict | None, pending: Pending | None = None, timeout: float | None = None):
        """Return the result of ``method`` on the child; raises :class:`RPCError` for its error
        answer, a child that cannot start or dies, or no answer within ``timeout``."""
        timeout = timeout or self.settings.timeout
        self._running(timeout)
        return self._exchange(method, params, pending or Pending(next(self.ids)), timeout)

    def cancel(self, pending: Pending, reason: str) -> None:
        pending.cancelled = True
        answers = self.waiting.pop(pending.id, None)
        if answers is not None:
            answers.put({"cancelled": True})
        self._send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": pending.id, "reason": reason}}, quiet=True)

    def close(self) -> None:
        """Stop the child: its stdin closed, then SIGTERM, then SIGKILL."""
        child, self.child, self.ready = self.child, None, False
        if child is None or child.poll() is not None:
            return
        try:
            child.stdin.close()
            child.wait(timeout=1.0)
        except (OSError, subprocess.TimeoutExpired):
            child.terminate()
            try:
                child.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def alive(self) -> bool:
        return self.child is not None and self.child.poll() is None

    # --- the child ----------------------------------------------------------------------------
    def _running(self, timeout: float) -> None:
        if self.ready and self.alive():
            return
        with self.handshake.turn(timeout):
            if self.ready and self.alive():
                return
            self.close()
            if time.monotonic() - self.started_at < RESTART_PAUSE_SECONDS:
                raise _down(self.name, "its process ended a moment ago")
            self.started_at = time.monotonic()
            env = {k: os.environ[k] for k in CHILD_ENV if k in os.environ}
            try:
                self.child = subprocess.Popen(self.settings.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=None, env={**env, **self.settings.env}, close_fds=True,
                                              start_new_session=True)
            except OSError as exc:
                raise _down(self.name, f"its command cannot start ({exc.strerror or exc})") from None
            threading.Thread(target=self._read, args=(self.child,), daemon=True,
                             name=f"mcp-stdio-{self.name}").start()
            try:
                answer = self._exchange("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                                       "clientInfo": CLIENT_INFO}, Pending(next(self.ids)), timeout)
            except RPCError:
                self.close()
                raise
            self.server_info = answer.get("serverInfo") if isinstance(answer.get("serverInfo"), dict) else {}
            self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            self.ready = True

    def _read(self, child: subprocess.Popen) -> None:
        """The child's stdout, a line at a time, each answer to whoever waits for it."""
        try:
            while True:
                line = child.stdout.readline(self.max_result_bytes + 1)
                if not line:
                    break
                if len(line) > self.max_result_bytes:  # a line past the bound: the child is stopped
                    log.warning("mcp: %s wrote a line over %d bytes; stopped", self.name, self.max_result_bytes)
                    child.kill()
                    break
                self._deliver(line)
        except (OSError, ValueError):
            pass
        for request_id in list(self.waiting):
            answers = self.waiting.pop(request_id, None)
            if answers is not None:
                answers.put({"gone": True})

    def _deliver(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return  # a stray print of the server's: not ours to read
        if not isinstance(message, dict):
            return
        if "method" in message and "id" in message:  # the server asks something of the portal
            answer = {"result": {}} if message["method"] == "ping" else \
                {"error": {"code": -32601, "message": "The portal answers no server requests."}}
            self._send({"jsonrpc": "2.0", "id": message["id"], **answer}, quiet=True)
            return
        answers = self.waiting.get(message.get("id")) if "id" in message else None
        if answers is not None:
            answers.put(message)

    def _send(self, message: dict, quiet: bool = False) -> None:
        child = self.child
        try:
            if child is None:
                raise OSError("not running")
            with self.write_lock:
                child.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
                child.stdin.flush()
        except (OSError, ValueError):
            if not quiet:
                raise _down(self.name, "its process is not running") from None

    def _exchange(self, method: str, params: dict | None, pending: Pending, timeout: float):
        answers: queue.Queue = queue.Queue()
        self.waiting[pending.id] = answers
        try:
            self._send({"jsonrpc": "2.0", "id": pending.id, "method": method, **({"params": params} if params else {})})
            try:
                message = answers.get(timeout=timeout)
            except queue.Empty:
                self.cancel(pending, "timed out")
                raise _timed_out(self.name, timeout) from None
        finally:
            self.waiting.pop(pending.id, None)
        if message.get("cancelled"):
            raise cancelled()
        if message.get("gone"):
            raise _down(self.name, "its process ended before it answered")
        return _answer_of(message, self.name)
