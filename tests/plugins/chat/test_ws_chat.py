"""Chat over a WebSocket (/ws/chat): one message per chunk, the token in a header or the first
message, a clear close without auth, 1011 when the upstream fails."""
from __future__ import annotations

import json

import pytest
from simple_websocket import ConnectionClosed
from ws_client import WebSocketClient

from conftest import bearer, chat_plugins

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def app(make_app, fake_upstream):
    return make_app(**chat_plugins(fake_upstream))


def _ws_messages(ws, until="done"):
    messages = []
    while True:
        message = json.loads(ws.receive(timeout=5))
        messages.append(message)
        if message["type"] == until:
            return messages


def test_websocket_chat_with_header_auth_sends_one_message_per_chunk(app, live_server):
    server = live_server(app)
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/chat", headers=bearer(app))
    ws.send(json.dumps({"model": "echo", "messages": HELLO, "max_tokens": 3}))
    messages = _ws_messages(ws)
    chunks = [m for m in messages if m["type"] == "chunk"]
    assert "".join(c["data"]["choices"][0]["delta"].get("content") or "" for c in chunks) == "tok0 tok1 tok2 "
    assert messages[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3}
    ws.close()


def test_websocket_chat_accepts_the_token_in_the_first_message(app, live_server):
    server = live_server(app)
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/chat")
    ws.send(json.dumps({"type": "auth", "token": bearer(app)["Authorization"].split()[1]}))
    assert json.loads(ws.receive(timeout=5))["type"] == "ready"
    ws.send(json.dumps({"model": "echo", "messages": HELLO}))
    assert _ws_messages(ws)[-1]["type"] == "done"
    ws.close()


def test_websocket_chat_without_auth_is_closed_with_a_reason(app, live_server):
    server = live_server(app)
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/chat")
    ws.send(json.dumps({"model": "echo", "messages": HELLO}))
    with pytest.raises(ConnectionClosed) as closed:
        ws.receive(timeout=5)
    assert closed.value.reason == 1008


def test_websocket_chat_upstream_failure_closes_with_1011(app, live_server):
    server = live_server(app)
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/chat", headers=bearer(app))
    ws.send(json.dumps({"model": "reset-mid", "messages": HELLO}))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.receive(timeout=5)
    assert closed.value.reason == 1011
