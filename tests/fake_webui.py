"""A small stand-in for Open WebUI 0.12's auth API, following ../shared/CONTRACTS.md.

Session tokens are HS256 JWTs over ``{id, typ: "session", auth_method, auth_time, session_stamp,
mfa_verified, exp, jti, iat}`` signed with ``WEBUI_SECRET_KEY``. ``GET /api/v1/auths/`` answers
200 with the user, 401 ``{"detail": ...}`` for a bad, expired or revoked token (a session stamp
that no longer matches), and 403 for ``sk-`` API keys.
"""
from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler

import jwt

from fake_http import serve


class FakeOpenWebUI:
    def __init__(self, secret: str):
        self.secret = secret
        self.users: dict[str, dict] = {}
        self.calls = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/health":
                    return self._json(200, {"status": True})
                if self.path != "/api/v1/auths/":
                    return self._json(404, {"detail": "Not Found"})
                fake.calls += 1
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                if token.startswith("sk-"):
                    return self._json(403, {"detail": "API key not allowed"})
                try:
                    claims = jwt.decode(token, fake.secret, algorithms=["HS256"])
                except jwt.PyJWTError:
                    return self._json(401, {"detail": "Invalid token"})
                user = fake.users.get(claims.get("id"))
                if user is None or claims.get("session_stamp") != user["session_stamp"]:
                    return self._json(401, {"detail": "Invalid token"})
                return self._json(200, {
                    "id": user["id"], "email": user["email"], "name": user["name"], "role": user["role"],
                    "profile_image_url": "/user.png", "token": token, "token_type": "Bearer",
                    "expires_at": claims.get("exp"), "permissions": {}})

        self.server, self.url = serve(Handler)

    def add_user(self, user_id: str, role: str = "user") -> dict:
        user = {"id": user_id, "email": f"{user_id}@example.com", "name": user_id.title(),
                "role": role, "session_stamp": uuid.uuid4().hex}
        self.users[user_id] = user
        return user

    def login(self, user_id: str, ttl: int = 3600, secret: str | None = None, **overrides) -> str:
        """Return a session token minted the way Open WebUI mints one."""
        now = int(time.time())
        claims = {"id": user_id, "typ": "session", "auth_method": "password", "auth_time": now,
                  "session_stamp": self.users[user_id]["session_stamp"], "mfa_verified": False,
                  "exp": now + ttl, "jti": uuid.uuid4().hex, "iat": now}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, secret or self.secret, algorithm="HS256")

    def change_password(self, user_id: str) -> None:
        """What an admin's password change does: rotate the stamp, refusing old tokens."""
        self.users[user_id]["session_stamp"] = uuid.uuid4().hex

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
