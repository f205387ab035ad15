"""The tools profile's example MCP server (streamable HTTP on :8000/mcp), for the portal's mcp
plugin to put behind /mcp. Replace it with your own servers; the portal adds users, roles,
limits and a ledger row per call, so this server needs none of its own."""
from __future__ import annotations

import datetime
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("example-tools", instructions="A clock and a word counter.")


@server.tool()
def now(timezone: str = "UTC") -> str:
    """The current time in an IANA time zone (Europe/Paris, America/New_York...)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone[:60]!r}") from None
    return datetime.datetime.now(zone).isoformat(timespec="seconds")


@server.tool()
def word_count(text: str) -> dict:
    """How many words, lines and characters ``text`` has."""
    return {"words": len(re.findall(r"\S+", text)), "lines": text.count("\n") + 1, "characters": len(text)}


if __name__ == "__main__":
    # only the compose network's name for it (and loopback, for its health check) may call it
    guard = TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                      allowed_hosts=["mcp-example:*", "127.0.0.1:*", "localhost:*"])
    server.run("streamable-http", host="0.0.0.0", port=8000, transport_security=guard)
