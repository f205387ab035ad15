"""The API key store: keys kept only as SHA-256 digests in the portal's database, shown once."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from agent_portal import Actor, AuthError
from agent_portal.cache import TTLCache
from agent_portal.database import create_tables
from agent_portal.types import ROLES

PREFIX = "ap-"

metadata = sa.MetaData()
api_keys = sa.Table(
    "portal_api_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("display", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value):
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def digest(key: str) -> str:
    """Return the SHA-256 hex digest under which a key is stored."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """API keys in the portal's database. Keys are never stored, only their digests."""

    def __init__(self, engine, cache_seconds: float):
        self.engine = engine
        self.cache = TTLCache()
        self.cache_seconds = cache_seconds
        self._last_touch: dict[str, float] = {}
        create_tables(engine, metadata)

    def create(self, owner: str, role: str, name: str = "", expires_in: timedelta | None = None,
               expires_at: datetime | None = None) -> dict:
        """Create a key that expires after ``expires_in`` or at ``expires_at`` (never when
        neither is given); returns its row plus ``key``, the only time the key is shown."""
        if expires_at is not None and _aware(expires_at) <= _now():
            raise ValueError("expires_at must be in the future")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not owner or len(owner) > 200:
            raise ValueError("owner must be 1 to 200 characters")
        key = PREFIX + secrets.token_hex(24)
        row = {
            "id": uuid.uuid4().hex, "key_hash": digest(key), "display": key[:7] + "…",
            "name": name or "", "owner": owner, "role": role, "created_at": _now(),
            "expires_at": _now() + expires_in if expires_in else _aware(expires_at),
            "last_used_at": None, "revoked_at": None,
        }
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(**row))
        return {**self._public(row), "key": key}

    def list(self) -> list[dict]:
        """Return every key's row (never the key itself), newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(api_keys.select().order_by(api_keys.c.created_at.desc())).mappings()
            return [self._public(dict(r)) for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key at once in this worker (others within ``cache_seconds``); False if unknown."""
        with self.engine.begin() as conn:
            result = conn.execute(api_keys.update().where(api_keys.c.id == key_id)
                                  .where(api_keys.c.revoked_at.is_(None)).values(revoked_at=_now()))
        self.cache.clear()
        return result.rowcount > 0

    def get(self, key_id: str) -> dict | None:
        """Return one key's row (never the key itself), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(api_keys.select().where(api_keys.c.id == key_id)).mappings().first()
        return self._public(dict(row)) if row is not None else None

    def set_expiry(self, key_id: str, expires_at: datetime | None) -> bool:
        """Make an active key expire at ``expires_at`` (None: never); False if there is no such
        key. This worker follows at once, the others within ``cache_seconds``."""
        with self.engine.begin() as conn:
            result = conn.execute(api_keys.update().where(api_keys.c.id == key_id)
                                  .where(api_keys.c.revoked_at.is_(None)).values(expires_at=_aware(expires_at)))
        self.cache.clear()
        return result.rowcount > 0

    def actor_for(self, key: str) -> Actor:
        """Return the actor of ``key``; raise a 401 :class:`AuthError` for a bad one.

        The lookup is by the key's digest, so a guess that shares a real key's prefix takes the
        same path as any other wrong key.
        """
        key_hash = digest(key)
        cached = self.cache.get(key_hash)
        if cached is not None:
            self._touch(cached.key_id)
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(api_keys.select().where(api_keys.c.key_hash == key_hash)).mappings().first()
        if row is None or not hmac.compare_digest(row["key_hash"], key_hash):
            raise AuthError("The API key is not valid.", code="invalid_api_key")
        if row["revoked_at"] is not None:
            raise AuthError("The API key has been revoked.", code="invalid_api_key")
        expires_at = _aware(row["expires_at"])
        if expires_at is not None and expires_at <= _now():
            raise AuthError("The API key has expired.", code="invalid_api_key")
        actor = Actor(id=row["owner"], role=row["role"], via="api-key", key_id=row["id"])
        ttl = self.cache_seconds
        if expires_at is not None:
            ttl = min(ttl, (expires_at - _now()).total_seconds())
        self.cache.put(key_hash, actor, ttl)
        self._touch(row["id"])
        return actor

    def _touch(self, key_id: str) -> None:
        """Record last use at most once a minute per key, off the request path."""
        now = time.monotonic()
        if now - self._last_touch.get(key_id, -1e9) < 60:
            return
        self._last_touch[key_id] = now

        def write():
            try:
                with self.engine.begin() as conn:
                    conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=_now()))
            except Exception:  # last use is informative; a write failure must not hurt a call
                pass

        threading.Thread(target=write, daemon=True).start()

    @staticmethod
    def _public(row: dict) -> dict:
        out = {k: v for k, v in row.items() if k != "key_hash"}
        for field in ("created_at", "expires_at", "last_used_at", "revoked_at"):
            value = _aware(out.get(field))
            out[field] = value.isoformat() if value else None
        return out
