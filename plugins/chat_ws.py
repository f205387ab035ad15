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
from werkzeug.datastructures import Headers

from agent_portal import AuthError, PortalError
from agent_portal.types import ROLE_RANK

CLOSE_POLICY = 1008
CLOSE_ERROR = 1011
AUTH_WAIT_SECONDS = 10


class _CredentialRequest:
    """The slice of a request that actor sources read, built from a first message's token."""

    def __init__(self, token: str):
        self.headers = Headers({"Authorization": f"Bearer {token}"})
        self.cookies = {}
        self.args = {}


def _authenticate(portal, ws):
    if g.get("actor") is not None:
        return g.actor
    raw = ws.receive(timeout=AUTH_WAIT_SECONDS)
    try:
        message = json.loads(raw) if raw else None
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("type") != "auth" or not isinstance(message.get("token"), str):
        ws.close(CLOSE_POLICY, "authenticate first: {\"type\": \"auth\", \"token\": ...}")
        return None
    try:
        actor = portal.actor_from_request(_CredentialRequest(message["token"]))
    except AuthError as exc:
        ws.close(CLOSE_POLICY, exc.message[:120])
        return None
    if actor is None or ROLE_RANK.get(actor.role, -1) < ROLE_RANK["user"]:
        ws.close(CLOSE_POLICY, "not allowed")
        return None
    g.actor = actor
    ws.send(json.dumps({"type": "ready", "user": actor.id}))
    return actor


def _frames(sse_bytes: bytes):
    for event in sse_bytes.split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                yield line[5:].strip()


def websocket_chat(portal, ws) -> None:
    """Serve chat requests on ``ws`` until the client closes it."""
    from .chat import ChatCall, UpstreamFailure, check_chat_body

    actor = _authenticate(portal, ws)
    if actor is None:
        return
    while True:
        raw = ws.receive()
        if raw is None:
            return
        try:
            body = check_chat_body(raw if isinstance(raw, (bytes, str)) else b"")
            call = ChatCall(portal, actor, body, True, None)
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
            "cost": record.cost, "request_id": record.request_id}))
