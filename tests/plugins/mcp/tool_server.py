"""A real MCP server built with the official SDK, for the tests: `python tool_server.py http PORT`
(streamable HTTP on 127.0.0.1) or `python tool_server.py stdio`."""
from __future__ import annotations

import sys
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return text


@server.tool()
def wipe_disk() -> str:
    """A tool only admins may call (config says so)."""
    return "wiped"


@server.tool()
def slow(seconds: float) -> str:
    """Answer after ``seconds``."""
    time.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def big(chars: int) -> str:
    """Answer ``chars`` characters."""
    return "x" * chars


@server.tool()
def broken() -> str:
    """Fail, as a tool does."""
    raise ValueError("this tool always fails")


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
