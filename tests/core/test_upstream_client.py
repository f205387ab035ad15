"""The chat path's upstream client (core/upstream_client.py): answers parsed, sockets kept or
closed as they should be, every timeout per attempt, nothing leaked when a call is cut."""
from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time

import pytest

from agent_portal.upstream_client import ConnectFailed, UpstreamClients


class ScriptedServer:
    """A loopback TCP server that reads each request's head and body, then lets ``answer(conn,
    request_number)`` write whatever it likes. Counts connections and requests. With ``tls`` (an
    ``ssl.SSLContext``), each connection is TLS."""

    def __init__(self, answer, tls=None):
        self.answer, self.tls = answer, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:
                    conn.close()
                    continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        self.closed_by_client.set()
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                if self.answer(conn, len(self.requests)) == "close":
                    return

    def close(self):
        self.listener.close()


def plain(body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.fixture
def clients():
    pools = UpstreamClients()
    yield pools
    pools.close()


def test_a_plain_answer_is_read_whole_and_its_connection_kept_for_the_next_call(clients):
    server = ScriptedServer(lambda conn, n: conn.sendall(plain(b'{"n": %d}' % n, b"X-Call: a\r\nx-call: b\r\n")))
    client = clients.client(server.url + "/v1/chat/completions")
    first = client.request("POST", "/v1/chat/completions", b'{"q": 1}', {"Authorization": "Bearer k"}, 1, 1)
    second = client.request("POST", "/v1/chat/completions", b'{"q": 2}', {}, 1, 1)
    assert (first.status, first.data, second.data) == (200, b'{"n": 1}', b'{"n": 2}')
    assert first.headers.get("content-type") == "application/json"
    assert first.headers.get("X-CALL") == "a, b"  # one field on two lines reads as one value
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Authorization: Bearer k\r\n" in server.requests[0] and server.requests[0].endswith(b'{"q": 1}')
    server.close()


def test_a_stream_is_read_as_it_arrives_and_its_connection_returns_at_its_end(clients):
    go_on = threading.Event()

    def answer(conn, n):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunk(b"data: one\n\n"))
        go_on.wait(5)
        conn.sendall(chunk(b"data: two\n\n") + b"0\r\n\r\n")

    server = ScriptedServer(answer)
    client = clients.client(server.url)
    response = client.request("POST", "/s", b"{}", {}, 1, 1, preload=False)
    assert response.read1(65536) == b"data: one\n\n"  # the first chunk alone, not waiting for more
    go_on.set()
    assert response.read1(65536) == b"data: two\n\n"
    assert response.read1(65536) == b""
    assert response.connection.sock is None and len(clients.pools[("http", "127.0.0.1", server.port)].idle) == 1
    server.close()


def test_closing_a_stream_midway_closes_its_connection_and_keeps_nothing(clients):
    def answer(conn, n):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"data: one\n\n"))
        conn.settimeout(5)
        if conn.recv(1) == b"":  # the caller hung up
            server.closed_by_client.set()
        return "close"

    server = ScriptedServer(answer)
    client = clients.client(server.url)
    response = client.request("POST", "/s", b"{}", {}, 1, 1, preload=False)
    assert response.read1() == b"data: one\n\n"
    response.close()
    assert server.closed_by_client.wait(2)  # the upstream sees the caller leave
    assert not clients.pools[("http", "127.0.0.1", server.port)].idle
    server.close()


def test_the_first_byte_timeout_is_the_attempts_own_and_a_cut_call_leaks_no_connection(clients):
    def answer(conn, n):
        if n <= 3:
            time.sleep(2)  # silent past the caller's first-byte limit
            return "close"
        conn.sendall(plain(b"{}"))

    server = ScriptedServer(answer)
    client = clients.client(server.url)
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            client.request("POST", "/x", b"{}", {}, 1, 0.2)
        assert time.monotonic() - started < 1.0
    # no slot was taken for good: the next call goes through at once, on a new connection
    assert client.request("POST", "/x", b"{}", {}, 1, 1).status == 200
    assert server.connections == 4
    server.close()


def test_a_refused_connection_says_nothing_was_sent(clients):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(ConnectFailed):
        clients.client(f"http://127.0.0.1:{port}").request("POST", "/x", b"{}", {}, 1, 1)


def test_a_kept_connection_the_upstream_closed_is_replaced_without_failing_the_call(clients):
    server = ScriptedServer(lambda conn, n: (conn.sendall(plain(b"{}")), "close")[1])  # answers, then hangs up
    client = clients.client(server.url)
    for _ in range(3):
        assert client.request("POST", "/x", b"{}", {}, 1, 1).status == 200
    assert server.connections == 3
    server.close()


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(clients):
    server = ScriptedServer(lambda conn, n: conn.sendall(plain(b"{}")))
    client = clients.client(server.url)
    with pytest.raises(ValueError):
        client.request("POST", "/x", b"{}", {"X-User": "alice\r\nX-Admin: yes"}, 1, 1)
    assert server.requests == []
    server.close()


def test_an_answer_that_is_not_http_fails_the_call_and_drops_the_connection(clients):
    from geventhttpclient.response import HTTPParseError

    server = ScriptedServer(lambda conn, n: (conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n"), "close")[1])
    client = clients.client(server.url)
    with pytest.raises(HTTPParseError):
        client.request("POST", "/x", b"{}", {}, 1, 1)
    assert not clients.pools[("http", "127.0.0.1", server.port)].idle
    server.close()


def test_idle_connections_beyond_the_cap_are_closed():
    pools = UpstreamClients(keep_idle=2)
    release = threading.Event()

    def answer(conn, n):
        release.wait(5)
        conn.sendall(plain(b"{}"))

    server = ScriptedServer(answer)
    client = pools.client(server.url)
    results = []
    callers = [threading.Thread(target=lambda: results.append(client.request("POST", "/x", b"{}", {}, 1, 5).status))
               for _ in range(5)]
    for caller in callers:
        caller.start()
    time.sleep(0.3)
    release.set()
    for caller in callers:
        caller.join(5)
    assert results == [200] * 5 and server.connections == 5
    assert len(pools.pools[("http", "127.0.0.1", server.port)].idle) == 2
    pools.close()
    server.close()


def test_an_https_upstream_is_reached_over_tls_checked_against_its_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(cert, key)
    server = ScriptedServer(lambda conn, n: conn.sendall(plain(b'{"tls": true}')), tls=serving)
    trusting = ssl.create_default_context(cafile=str(cert))
    pools = UpstreamClients(ssl_context=trusting)
    client = pools.client(f"https://localhost:{server.port}/v1")
    assert [client.request("POST", "/v1/x", b"{}", {}, 2, 2).data for _ in range(2)] == [b'{"tls": true}'] * 2
    assert server.connections == 1  # kept alive across calls
    assert server.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\nHost: localhost:")
    # an upstream whose certificate nobody vouches for is refused before anything is sent
    strict = UpstreamClients()
    with pytest.raises(ssl.SSLError):
        strict.client(f"https://localhost:{server.port}").request("POST", "/v1/x", b"{}", {}, 2, 2)
    assert len(server.requests) == 2
    pools.close()
    strict.close()
    server.close()


def test_a_kept_connection_is_reused_whatever_its_descriptor_number(clients):
    """A worker holding thousands of streams has sockets past descriptor 1,024 (select's limit)."""
    import os

    from agent_portal.upstream_client import alive

    server = ScriptedServer(lambda conn, n: conn.sendall(plain(b"{}")))
    sock = socket.create_connection(("127.0.0.1", server.port))
    high = socket.socket(fileno=os.dup2(sock.fileno(), 1500))
    sock.close()
    assert alive(high)  # open and quiet: reusable
    high.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    time.sleep(0.2)
    assert not alive(high)  # an answer (or the end) waiting on it: not reusable
    assert high.recv(65536).startswith(b"HTTP/1.1 200")  # read, so that closing resets nothing
    high.close()
    server.close()
