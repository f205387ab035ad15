"""The WebSocket client the tests connect with: simple_websocket's, with its handshake mended.

simple_websocket 1.1's client takes only the handshake's answer from its first read. A frame the
server sends right after accepting (the live events' "hello") can arrive in that same read; it is
then left in wsproto's buffer until some later bytes arrive, and a test waiting for it times out.
"""
from __future__ import annotations

from simple_websocket import Client


class WebSocketClient(Client):
    """A simple_websocket client that also delivers the frames read together with the handshake."""

    def handshake(self):
        super().handshake()
        self.connected = self._handle_events()
