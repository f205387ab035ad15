"""Chat over a WebSocket: the same auth and backends as HTTP, one JSON message per chunk.

Protocol. The client may authenticate with the ``Authorization`` header of the upgrade, or
send ``{"type": "auth", "token": "..."}`` first (never a token in the URL). Each chat request
is a JSON object shaped like ``/v1/chat/completions``'s body. The portal answers
``{"type": "chunk", "data": <chunk>}`` per chunk and ``{"type": "done", "usage": ...}`` at the
end; any error closes the socket with code 1008 (auth) or 1011 (upstream) and a reason.
"""
from __future__ import annotations

import json

from flask import g

from agent_portal import PortalError
from agent_portal.ws_auth import CLOSE_POLICY, authenticate_websocket

from .body import check_chat_body
from .call import ChatCall
from .upstream import UpstreamFailure

CLOSE_ERROR = 1011


def _frames(sse_bytes: bytes):
    for event in sse_bytes.split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                yield line[5:].strip()


def websocket_chat(portal, ws) -> None:
    """Serve chat requests on ``ws`` until the client closes it; each message is its own call
    with its own record (the upgrade's request id kept for correlation)."""
    actor = authenticate_websocket(portal, ws, "user")
    if actor is None:
        return
    while True:
        raw = ws.receive()
        if raw is None:
            return
        try:
            body = check_chat_body(raw if isinstance(raw, (bytes, str)) else b"")
            call = ChatCall(portal, actor, body, True, None, g.request_id)
            call.open()
        except PortalError as exc:
            ws.close(CLOSE_ERROR if exc.status >= 500 else CLOSE_POLICY, exc.message[:120])
            return
        except UpstreamFailure as failure:
            ws.close(CLOSE_ERROR, failure.message[:120])
            return
        stream = call.relay()
        try:
            for block in stream:
                for data in _frames(block):
                    if data == b"[DONE]":
                        continue
                    chunk = json.loads(data)
                    if "error" in chunk:
                        ws.close(CLOSE_ERROR, str(chunk["error"].get("message", "upstream error"))[:120])
                        return
                    ws.send(json.dumps({"type": "chunk", "data": chunk}))
        finally:
            stream.close()
        record = call.record
        ws.send(json.dumps({"type": "done", "usage": {
            "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens},
            "cost": record.cost, "request_id": record.request_id, "call_id": record.call_id}))
