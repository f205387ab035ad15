"""A small gevent HTTP/1.1 load generator: keep-alive sockets, Content-Length and chunked bodies.

Lean on purpose: it must cost less per request than anything it measures.
"""
from __future__ import annotations

import json
import time

from gevent import socket


class Connection:
    """One keep-alive connection that sends POSTs and reads whole or streamed answers."""

    def __init__(self, host: str, port: int, timeout: float = 60.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = None
        self.buffer = b""

    def _connect(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buffer += data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def post(self, path: str, body: bytes, headers: dict, on_chunk=None):
        """Send one POST; returns ``(status, body_bytes)``. ``on_chunk(bytes)`` sees each chunk."""
        if self.sock is None:
            self._connect()
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}",
                 "Content-Type: application/json"] + [f"{k}: {v}" for k, v in headers.items()]
        try:
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            head = self._read_until(b"\r\n\r\n")
        except (OSError, ConnectionError):
            self.close()
            raise
        status_line, *header_lines = head.split(b"\r\n")
        status = int(status_line.split()[1])
        fields = {}
        for line in header_lines:
            key, _, value = line.partition(b":")
            fields[key.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    break
                chunk = self._read_exact(size)
                self._read_exact(2)
                if on_chunk is not None:
                    on_chunk(chunk)
                parts.append(chunk)
            payload = b"".join(parts)
        elif b"content-length" in fields:
            payload = self._read_exact(int(fields[b"content-length"]))
            if on_chunk is not None:
                on_chunk(payload)
        else:  # read to close
            while True:
                try:
                    self._fill()
                except ConnectionError:
                    break
            payload, self.buffer = self.buffer, b""
            self.close()
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, payload


def chat_body(model: str, stream: bool, max_tokens: int = 5) -> bytes:
    return json.dumps({"model": model, "stream": stream, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "benchmark"}]}).encode()


class StreamTimer:
    """Times one streamed answer: first data chunk, gaps between chunks, data frames seen."""

    __slots__ = ("start", "first", "last", "gaps", "frames")

    def __init__(self):
        self.start = time.perf_counter()
        self.first = None
        self.last = None
        self.gaps = []
        self.frames = 0

    def __call__(self, chunk: bytes):
        now = time.perf_counter()
        count = chunk.count(b"data: ")
        if count == 0:
            return
        if self.first is None:
            self.first = now
        elif self.last is not None:
            self.gaps.append(now - self.last)
        self.last = now
        self.frames += count
