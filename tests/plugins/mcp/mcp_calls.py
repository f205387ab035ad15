"""What the MCP tests share: real MCP servers (the official SDK's, over HTTP and stdio), servers
that hang or answer garbage, an app in front of them, and JSON-RPC through the portal."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

from conftest import bearer, free_port

TOOL_SERVER = os.path.join(os.path.dirname(__file__), "tool_server.py")
UPSTREAM_SECRET = "upstream-mcp-key-7f3a9c1e5b2d8046"
ACCEPT_BOTH = "application/json, text/event-stream"


def start_tool_server() -> tuple[subprocess.Popen, str]:
    """Start tool_server.py over streamable HTTP; return the process and its /mcp URL once it listens."""
    port = free_port()
    process = subprocess.Popen([sys.executable, TOOL_SERVER, "http", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the MCP tool server did not start")


class RawServer:
    """A TCP server that accepts and then does ``behaviour``: "hang" (reads, never answers) or
    "garbage" (an HTTP 200 of HTML)."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/mcp"
        self.held: list = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.behaviour == "garbage":
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 14\r\n\r\n<html>no</html")

    def stop(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def mcp_sections(url: str, **extra) -> dict:
    servers = {
        "tools": {"url": url, "headers": {"Authorization": f"Bearer {UPSTREAM_SECRET}"}, "timeout_seconds": 3,
                  "tools": {"wipe_disk": {"roles": ["admin"]}, "add": {"price_per_call": 0.01}}},
        "local": {"command": [sys.executable, TOOL_SERVER, "stdio"], "roles": ["user", "admin"]},
        **extra.pop("servers", {}),
    }
    return {"mcp": {"servers": servers, "heartbeat_seconds": 0.2, **extra.pop("mcp", {})},
            "ledger": {"flush_seconds": 0.05}, "observability": {"health_cache_seconds": 0}, **extra}


class RPC:
    """JSON-RPC through the portal's Flask test client, as one caller on one path."""

    def __init__(self, app, user: str = "alice", role: str = "user", path: str = "/mcp"):
        self.client, self.path = app.test_client(), path
        self.headers = {**bearer(app, user, role), "Accept": "application/json"}
        self.ids = iter(range(1, 10_000))
        self.session = None

    def post(self, message, **headers):
        return self.client.post(self.path, json=message, headers={**self.headers, **headers})

    def initialize(self) -> "RPC":
        answer = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                       "clientInfo": {"name": "test", "version": "1"}}})
        assert answer.status_code == 200, answer.data
        self.session = answer.headers["Mcp-Session-Id"]
        self.headers["Mcp-Session-Id"] = self.session
        self.headers["MCP-Protocol-Version"] = answer.json["result"]["protocolVersion"]
        return self

    def call(self, method: str, params: dict | None = None, **headers) -> dict:
        """Return the JSON-RPC answer to ``method`` (the response must be JSON, HTTP 200)."""
        answer = self.post({"jsonrpc": "2.0", "id": next(self.ids), "method": method,
                            **({"params": params} if params is not None else {})}, **headers)
        assert answer.status_code == 200, (answer.status_code, answer.data)
        return answer.json

    def tool(self, name: str, **arguments) -> dict:
        return self.call("tools/call", {"name": name, "arguments": arguments})

    def tool_names(self) -> set:
        return {tool["name"] for tool in self.call("tools/list")["result"]["tools"]}
