"""A small stand-in for Open WebUI 0.12's auth API, following ../shared/CONTRACTS.md.

Session tokens are HS256 JWTs over ``{id, typ: "session", auth_method, auth_time, session_stamp,
mfa_verified, exp, jti, iat}`` signed with ``WEBUI_SECRET_KEY``. ``GET /api/v1/auths/`` answers
200 with the user, 401 ``{"detail": ...}`` for a bad, expired or revoked token (a session stamp
that no longer matches), and 403 for ``sk-`` API keys.

Groups as 0.12.4's ``routers/groups.py`` serves them: ``GET /api/v1/groups/`` lists every group
for an admin (each with ``member_count``, no member ids) and only the caller's own for anyone
else; ``POST /api/v1/groups/id/{id}/users`` answers an admin with the members. Both take a
session token or an ``sk-`` API key.
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
        self.api_keys: dict[str, str] = {}  # sk- key -> user id
        self.groups: dict[str, dict] = {}  # id -> group, with its members' ids under "members"
        self.calls = 0
        self.group_calls = 0
        self.groups_unavailable = False  # group calls answer 503, as a restarting Open WebUI does
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

            def _caller(self):
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                if token.startswith("sk-"):
                    return fake.users.get(fake.api_keys.get(token))
                try:
                    claims = jwt.decode(token, fake.secret, algorithms=["HS256"])
                except jwt.PyJWTError:
                    return None
                user = fake.users.get(claims.get("id"))
                return user if user is not None and claims.get("session_stamp") == user["session_stamp"] else None

            def _group_caller(self):
                """Return the caller of a group call, or None once it was answered with an error."""
                fake.group_calls += 1
                if fake.groups_unavailable:
                    return self._json(503, {"detail": "Service Unavailable"})
                caller = self._caller()
                if caller is None:
                    return self._json(401, {"detail": "Not authenticated"})
                return caller

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:4] != ["api", "v1", "groups", "id"] or parts[5:] != ["users"] or len(parts) != 6:
                    return self._json(404, {"detail": "Not Found"})
                caller = self._group_caller()
                if caller is None:
                    return None
                if caller["role"] != "admin":
                    return self._json(401, {"detail": "You do not have permission to access this resource."})
                group = fake.groups.get(parts[4])
                if group is None:
                    return self._json(400, {"detail": "We could not find what you're looking for :/"})
                return self._json(200, [{k: fake.users[u][k] for k in ("id", "name", "email", "role")}
                                        for u in group["members"] if u in fake.users])

            def do_GET(self):
                if self.path == "/health":
                    return self._json(200, {"status": True})
                if self.path == "/api/v1/groups/":
                    caller = self._group_caller()
                    if caller is None:
                        return None
                    shown = [g for g in fake.groups.values()
                             if caller["role"] == "admin" or caller["id"] in g["members"]]
                    return self._json(200, [{**{k: v for k, v in g.items() if k != "members"},
                                             "member_count": len(g["members"])} for g in shown])
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

    def add_api_key(self, user_id: str) -> str:
        """Return a new ``sk-`` API key of ``user_id``."""
        key = "sk-" + uuid.uuid4().hex
        self.api_keys[key] = user_id
        return key

    def add_group(self, name: str, parent: str | None = None, members=()) -> str:
        """Add a group (under ``parent``, a group id) with ``members`` (user ids); returns its id."""
        group_id, now = str(uuid.uuid4()), int(time.time())
        self.groups[group_id] = {"id": group_id, "user_id": "admin", "name": name, "description": "",
                                 "parent_group_id": parent, "permissions": {}, "data": {}, "meta": None,
                                 "created_at": now, "updated_at": now, "members": list(members)}
        return group_id

    def remove_member(self, group_id: str, user_id: str) -> None:
        self.groups[group_id]["members"].remove(user_id)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
