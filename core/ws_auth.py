"""Authenticating a WebSocket: the upgrade's own credentials, or a first ``auth`` message.

Browsers cannot set headers on a WebSocket, and a token in the URL would end up in logs, so a
route that allows it (``auth_in_first_message``) reads ``{"type": "auth", "token": "..."}`` first.
"""
from __future__ import annotations

import json

from flask import g
from werkzeug.datastructures import Headers

from .errors import AuthError

CLOSE_POLICY = 1008
AUTH_WAIT_SECONDS = 10


class CredentialRequest:
    """The slice of a request that actor sources read, built from a first message's token."""

    def __init__(self, token: str):
        self.headers = Headers({"Authorization": f"Bearer {token}"})
        self.cookies = {}
        self.args = {}
        self.path = ""


def authenticate_websocket(portal, ws, access: str = "user"):
    """Return the actor of ``ws``; closes it with 1008 and returns None when there is none.

    Uses the actor the core found on the upgrade request when there is one; otherwise waits
    for an ``auth`` message and answers ``{"type": "ready", "user": id}``.
    """
    if g.get("actor") is not None:
        return g.actor
    raw = ws.receive(timeout=AUTH_WAIT_SECONDS)
    try:
        message = json.loads(raw) if raw else None
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("type") != "auth" or not isinstance(message.get("token"), str):
        ws.close(CLOSE_POLICY, 'authenticate first: {"type": "auth", "token": "..."}')
        return None
    try:
        actor = portal.actor_from_request(CredentialRequest(message["token"]))
    except AuthError as exc:
        ws.close(CLOSE_POLICY, exc.message[:120])
        return None
    if actor is None or not actor.may(access):
        ws.close(CLOSE_POLICY, "not allowed")
        return None
    g.actor = actor
    ws.send(json.dumps({"type": "ready", "user": actor.id}))
    return actor
