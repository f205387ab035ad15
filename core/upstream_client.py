"""The chat path's HTTP/1.1 client: keep-alive sockets per upstream host and geventhttpclient's
C parser (llhttp) for answers, with the surface the chat relay reads (``status``, ``headers``,
``data``, ``read1``, ``close``, ``release_conn``, ``connection.sock``).

Why not urllib3 here: its answer parsing (``http.client``) costs the chat path about twice a
direct caller's round trip. Why not geventhttpclient's own ``HTTPClient``: its timeouts are the
pool's, fixed at creation, and its pool counts busy sockets with a semaphore that a timeout or a
caller leaving between taking and returning a socket can leak. Here each attempt sets its own
connect and first-byte timeouts on the socket it uses, nothing counts busy sockets (a socket is
either in a caller's hands or idle in the pool), and ``read1`` returns what one read brought.

Sockets come from the ``socket`` module as it is at call time: gevent's under the portal's
gevent workers, the standard library's elsewhere (tests, tools), so a stream may be read from
another thread than the one that sent the call.
"""
from __future__ import annotations

import re
import select
import socket
import ssl
import threading
from collections import deque
from urllib.parse import urlsplit

from gevent.monkey import get_original
from geventhttpclient.header import Headers
from geventhttpclient.response import HTTPConnectionClosed, HTTPSocketPoolResponse

BLOCK = 65536
# the plain poll, never gevent's: asking with no wait needs no trip through the event loop (and
# select() refuses descriptors past 1,024, which a worker holding many streams opens)
new_poll = get_original("select", "poll")
FORBIDDEN_IN_HEADERS = re.compile(r"[\r\n\x00]")


class ConnectFailed(ConnectionError):
    """The upstream refused the connection, or its name does not resolve: nothing was sent."""


class JoinedHeaders(Headers):
    """An answer's headers, case-insensitive; a field sent on several lines reads as one value
    joined by ", " (as urllib3 reads it)."""

    def get(self, field, default=None):
        try:
            value = self[field]
        except KeyError:
            return default
        return ", ".join(value) if isinstance(value, list) else value


class HostPool:
    """Keep-alive connections to one upstream (scheme, host, port).

    As many connections are open at once as callers need; up to ``keep_idle`` idle ones are kept
    for the next calls, the newest first (the likeliest still open), and any more are closed.
    """

    def __init__(self, scheme: str, host: str, port: int, keep_idle: int = 256,
                 ssl_context: ssl.SSLContext | None = None):
        self.scheme, self.host, self.port = scheme, host, port
        self.keep_idle = keep_idle
        self.idle: deque = deque()
        self.lock = threading.Lock()  # deque's append and pop are atomic; the lock is for the cap
        self.ssl_context = ssl_context or (ssl.create_default_context() if scheme == "https" else None)
        self.closed = False

    def get_socket(self, connect_timeout: float) -> tuple[socket.socket, bool]:
        """Return ``(socket, reused)``: an idle one still open, else a new connection. Raises
        :class:`ConnectFailed` when the upstream refuses or does not resolve, ``socket.timeout``
        when connecting took longer than ``connect_timeout``."""
        while True:
            try:
                sock = self.idle.pop()
            except IndexError:
                break
            if alive(sock):
                return sock, True
            _close_quietly(sock)
        return self.connect(connect_timeout), False

    def connect(self, connect_timeout: float) -> socket.socket:
        """Return a new connection to the upstream (TLS for https), Nagle off."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=connect_timeout)
        except TimeoutError:  # socket.timeout: slow, not refused
            raise
        except OSError as exc:  # refused, unreachable, a name that does not resolve
            raise ConnectFailed(f"{self.host}:{self.port}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.scheme == "https":
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            _close_quietly(sock)
            raise
        return sock

    def return_socket(self, sock) -> None:
        """Keep ``sock`` for the next call (its answer was read to its end, keep-alive)."""
        with self.lock:
            if not self.closed and len(self.idle) < self.keep_idle:
                self.idle.append(sock)
                return
        _close_quietly(sock)

    def release_socket(self, sock) -> None:
        """Close ``sock``: it cannot carry another call."""
        _close_quietly(sock)

    def close(self) -> None:
        """Close every idle connection; connections in use close when their answers end."""
        with self.lock:
            self.closed = True
            idle, self.idle = list(self.idle), deque()
        for sock in idle:
            _close_quietly(sock)


class UpstreamClients:
    """One :class:`HostPool` per upstream (scheme, host, port), shared by every backend of one
    portal (``portal.upstream_clients``)."""

    def __init__(self, keep_idle: int = 256, ssl_context: ssl.SSLContext | None = None):
        self.keep_idle = keep_idle
        self.ssl_context = ssl_context  # None: the system's trusted authorities
        self.pools: dict[tuple, HostPool] = {}
        self.lock = threading.Lock()

    def client(self, url: str) -> "UpstreamClient":
        """Return the client for requests to ``url``'s host (its path is the caller's to pass)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        key = (parts.scheme, parts.hostname, port)
        with self.lock:
            pool = self.pools.get(key)
            if pool is None:
                pool = self.pools[key] = HostPool(parts.scheme, parts.hostname, port, self.keep_idle,
                                                  self.ssl_context)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # an IPv6 literal in brackets
        return UpstreamClient(pool, host if port == default_port else f"{host}:{port}")

    def close(self) -> None:
        """Close every pool's idle connections."""
        with self.lock:
            pools = list(self.pools.values())
        for pool in pools:
            pool.close()


class UpstreamClient:
    """Requests to one upstream host through its :class:`HostPool`."""

    def __init__(self, pool: HostPool, host_header: str):
        self.pool, self.host_header = pool, host_header

    def request(self, method: str, path: str, body: bytes, headers: dict, connect_timeout: float,
                read_timeout: float, preload: bool = True) -> "UpstreamResponse":
        """Send one request and return its answer once the status line and headers arrived
        (with the whole body when ``preload``). ``read_timeout`` bounds the send and every
        read until the caller sets another (``set_read_timeout``).

        Raises :class:`ConnectFailed` (nothing sent), ``socket.timeout``, ``OSError`` or
        ``HTTPParseError`` (the upstream reset, closed or answered something other than HTTP).
        A reused connection the upstream had closed before reading the request is retried once
        on a new one, as nothing of the call reached the upstream.
        """
        head = _request_head(method, path, self.host_header, headers, len(body))
        sock, reused = self.pool.get_socket(connect_timeout)
        while True:
            try:
                sock.settimeout(read_timeout)
                sock.sendall(head + body if len(body) < BLOCK else head)
                if len(body) >= BLOCK:
                    sock.sendall(body)
                response = UpstreamResponse(sock, self.pool, method)
            except (HTTPConnectionClosed, ConnectionResetError, BrokenPipeError):
                _close_quietly(sock)  # (a response that saw the close has closed it already)
                if not reused:
                    raise
                sock, reused = self.pool.connect(connect_timeout), False
                continue
            except BaseException:
                _close_quietly(sock)
                raise
            break
        if preload:
            response.data  # noqa: B018 (read now, within the attempt's timeouts)
        return response


class UpstreamResponse(HTTPSocketPoolResponse):
    """An upstream's answer with the surface the chat relay reads (urllib3's, in the part used).

    Its socket goes back to the pool when the body has been read to its end (keep-alive), and is
    closed by ``close`` or any failed read.
    """

    def __init__(self, sock, pool: HostPool, method: str):
        self._data: bytes | None = None
        super().__init__(sock, pool, method=method, headers_type=JoinedHeaders, block_size=BLOCK)

    @property
    def data(self) -> bytes:
        """The whole body (what is left of it, read now when not read yet)."""
        if self._data is None:
            try:
                self._data = self.read()
            except BaseException:
                self.close()
                raise
        return self._data

    @property
    def status(self) -> int:
        return self.get_code()

    @property
    def headers(self) -> JoinedHeaders:  # geventhttpclient's is a generator of pairs
        return self._headers_index

    @property
    def connection(self):
        """This answer itself, whose ``sock`` is its socket (None once given back or closed)."""
        return self

    @property
    def sock(self):
        return self._sock

    def read1(self, size: int = BLOCK) -> bytes:
        """Return the body bytes one read brings (those already parsed, if any), at most
        ``size``; b"" at the body's end. Raises on a reset, a timeout or a malformed body."""
        while not self._body_buffer:
            sock = self._sock
            if self.message_complete or sock is None:
                return b""
            try:
                data = sock.recv(BLOCK)
                if not data:
                    raise HTTPConnectionClosed("the upstream closed the connection before the body ended")
                self.feed(data)
            except BaseException:
                self.close()
                raise
        if len(self._body_buffer) <= size:
            data = bytes(self._body_buffer)
            self._body_buffer.clear()
        else:
            data = bytes(self._body_buffer[:size])
            del self._body_buffer[:size]
        return data

    def release_conn(self) -> None:
        """Give the socket back to the pool when the body was read to its end, else close it."""
        self.release()

    def close(self) -> None:
        """Close the connection now (the upstream sees the caller leave); nothing goes back to
        the pool."""
        sock, pool = self._sock, self._pool
        self._sock = self._pool = None
        if sock is not None and pool is not None:
            pool.release_socket(sock)


def alive(sock) -> bool:
    """Return True when an idle keep-alive socket is still open: nothing to read on it (a closed
    one reads its end)."""
    try:
        descriptor = sock.fileno()
        if descriptor < 0:
            return False
        poll = new_poll()
        poll.register(descriptor, select.POLLIN)
        return not poll.poll(0)  # readable, hung up or in error: not reusable
    except (OSError, ValueError):
        return False


def _request_head(method: str, path: str, host: str, headers: dict, length: int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n"]
    for name, value in headers.items():
        value = str(value)
        if FORBIDDEN_IN_HEADERS.search(name) or FORBIDDEN_IN_HEADERS.search(value) or ":" in name:
            raise ValueError(f"invalid header {name!r}: a line break or NUL in a header")
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def _close_quietly(sock) -> None:
    try:
        sock.close()
    except Exception:
        pass
