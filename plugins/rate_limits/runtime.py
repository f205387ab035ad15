"""Limits an admin set at runtime, in the portal's database, over the config's ``rate_limits``.

Every worker and instance reads the table through a cache of ``refresh_seconds``, so a change
holds everywhere within that time with no restart and no Redis. While the database cannot
answer, the last table read stays in force. An entry whose limits are null lifts the config's
limits of that scope and id (a DELETE of a limit the config set).
"""
from __future__ import annotations

import json
import logging
import threading
import time

import sqlalchemy as sa

from agent_portal.database import create_tables, set_row
from agent_portal.outages import Outage

log = logging.getLogger("agent_portal.rate_limits")

SCOPES = ("users", "keys", "roles", "models", "groups")

metadata = sa.MetaData()
runtime_limits = sa.Table(
    "portal_limits", metadata,
    sa.Column("scope", sa.String(16), primary_key=True),
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("limits", sa.Text),  # JSON object, or null: the config's limits lifted
    sa.Column("changed_by", sa.String(200), nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
)


def merged(settings: dict, rows: dict) -> dict:
    """Return ``{scope: {id: limits}}`` for every scope of :data:`SCOPES`: the config's
    ``rate_limits`` (``settings``) with the runtime ``rows`` over it: an entry replaces the
    config's limits of its scope and id whole; a lifted one (limits null) removes them."""
    table = {scope: dict(settings.get(scope) or {}) for scope in SCOPES}
    for (scope, ident), entry in rows.items():
        if scope not in table:
            continue
        if entry["limits"] is None:
            table[scope].pop(ident, None)
        else:
            table[scope][ident] = entry["limits"]
    return table


class RuntimeLimits:
    """The ``portal_limits`` table, read through a short per-worker cache."""

    def __init__(self, engine, refresh_seconds: float):
        self.engine = engine
        self.refresh_seconds = refresh_seconds
        self.outage = Outage(log, "limits table")
        self._rows: dict = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()
        create_tables(engine, metadata)

    def rows(self) -> dict:
        """Return ``{(scope, id): {"limits", "changed_by", "changed_at"}}``: the table as this
        worker last read it, read again when older than ``refresh_seconds`` (by one caller; the
        others meanwhile go on with the rows read last)."""
        if self._read_at is not None and time.monotonic() - self._read_at < self.refresh_seconds:
            return self._rows
        if not self._lock.acquire(blocking=self._read_at is None):
            return self._rows
        try:
            if self._read_at is None or time.monotonic() - self._read_at >= self.refresh_seconds:
                self._refresh()
            return self._rows
        finally:
            self._lock.release()

    def _refresh(self) -> None:
        try:
            with self.engine.connect() as conn:
                found = conn.execute(sa.select(runtime_limits)).all()
        except Exception as exc:  # the rows read last hold; asked again after refresh_seconds
            self.outage.failed(exc)
        else:
            self.outage.answered()
            self._rows = {(r.scope, r.id): {"limits": json.loads(r.limits) if r.limits else None,
                                            "changed_by": r.changed_by, "changed_at": r.changed_at}
                          for r in found}
        self._read_at = time.monotonic()

    def get(self, scope: str, ident: str):
        """Return the entry of ``scope``/``ident`` (see :meth:`rows`), or None."""
        return self.rows().get((scope, ident))

    def put(self, scope: str, ident: str, limits: dict | None, by: str) -> None:
        """Set ``scope``/``ident``'s limits (None: lift the config's); this worker sees it at
        once, the others within ``refresh_seconds``."""
        values = {"limits": None if limits is None else json.dumps(limits, sort_keys=True),
                  "changed_by": by, "changed_at": time.time()}
        with self.engine.begin() as conn:
            set_row(conn, runtime_limits, {"scope": scope, "id": ident}, values)
        self._read_at = None

    def delete(self, scope: str, ident: str) -> bool:
        """Forget ``scope``/``ident``'s entry (the config's limits, if any, hold again); returns
        whether there was one."""
        with self.engine.begin() as conn:
            gone = conn.execute(runtime_limits.delete().where(
                runtime_limits.c.scope == scope, runtime_limits.c.id == ident)).rowcount
        self._read_at = None
        return bool(gone)
