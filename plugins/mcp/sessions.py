"""The portal's own MCP sessions (``Mcp-Session-Id``): made by ``initialize``, bound to the caller
and the path they were made on, ended by ``DELETE``, kept in the portal's database so any worker
or instance knows them."""
from __future__ import annotations

import secrets
import time

import sqlalchemy as sa

from agent_portal.cache import TTLCache
from agent_portal.database import create_tables

SESSION_HOURS = 24  # past this a session is unknown (404) and the client initializes again
KNOWN_CACHE_SECONDS = 10.0  # a worker trusts what it read this long (an ended session included)

metadata = sa.MetaData()
sessions = sa.Table(
    "portal_mcp_sessions", metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("actor_id", sa.String(200), nullable=False),
    sa.Column("scope", sa.String(64), nullable=False),  # "" for /mcp, else the server's name
    sa.Column("protocol", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)


class SessionStore:
    def __init__(self, engine):
        self.engine = engine
        create_tables(engine, metadata)
        self.known = TTLCache(max_entries=20_000)

    def create(self, actor_id: str, scope: str, protocol: str) -> str:
        """Return a new session id for ``actor_id`` on ``scope``; sessions past their time go."""
        session_id = secrets.token_hex(24)
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.created_at < now - SESSION_HOURS * 3600))
            conn.execute(sessions.insert().values(session_id=session_id, actor_id=actor_id, scope=scope,
                                                  protocol=protocol, created_at=now))
        self.known.put(session_id, (actor_id, scope, protocol, now), KNOWN_CACHE_SECONDS)
        return session_id

    def protocol_of(self, session_id: str, actor_id: str, scope: str) -> str | None:
        """Return the protocol version of the live session ``session_id`` when it is ``actor_id``'s
        on ``scope``; None when it is unknown, ended, too old or someone else's."""
        found = self.known.get(session_id)
        if found is None:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(sessions).where(sessions.c.session_id == session_id[:64])).first()
            found = (row.actor_id, row.scope, row.protocol, row.created_at) if row else ("", None, None, 0.0)
            self.known.put(session_id, found, KNOWN_CACHE_SECONDS)
        owner, where, protocol, created = found
        if owner != actor_id or where != scope or created < time.time() - SESSION_HOURS * 3600:
            return None
        return protocol

    def end(self, session_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.session_id == session_id[:64]))
        self.known.pop(session_id)
