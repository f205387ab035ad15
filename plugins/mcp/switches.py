"""Tools an admin switched on or off at runtime, in the portal's database: every worker and
instance follows a switch within ``SWITCH_CACHE_SECONDS``, with no restart."""
from __future__ import annotations

import time

import sqlalchemy as sa

from agent_portal.database import create_tables, set_row

SWITCH_CACHE_SECONDS = 3.0

metadata = sa.MetaData()
switches = sa.Table(
    "portal_mcp_switches", metadata,
    sa.Column("server", sa.String(64), primary_key=True),
    sa.Column("tool", sa.String(200), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("changed_by", sa.String(200), nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
)


class ToolSwitches:
    """Runtime switches over the config's ``enabled``; read through a short per-worker cache."""

    def __init__(self, engine):
        self.engine = engine
        create_tables(engine, metadata)
        self._cached: dict | None = None
        self._read_at = 0.0

    def all(self) -> dict:
        """Return ``{(server, tool): {enabled, changed_by, changed_at}}`` of every switch set."""
        if self._cached is None or time.monotonic() - self._read_at > SWITCH_CACHE_SECONDS:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(switches)).all()
            self._cached = {(r.server, r.tool): {"enabled": r.enabled, "changed_by": r.changed_by,
                                                 "changed_at": r.changed_at} for r in rows}
            self._read_at = time.monotonic()
        return self._cached

    def enabled(self, server: str, tool: str, configured: bool) -> bool:
        """Return whether ``tool`` of ``server`` is on: its switch when set, else ``configured``."""
        switch = self.all().get((server, tool))
        return configured if switch is None else switch["enabled"]

    def set(self, server: str, tool: str, enabled: bool, by: str) -> None:
        """Switch ``tool`` on or off (this worker sees it at once, the others within the cache time)."""
        with self.engine.begin() as conn:
            set_row(conn, switches, {"server": server, "tool": tool},
                    {"enabled": enabled, "changed_by": by, "changed_at": time.time()})
        self._cached = None

    def clear(self, server: str, tool: str) -> None:
        """Forget the switch: config decides again."""
        with self.engine.begin() as conn:
            conn.execute(switches.delete().where(switches.c.server == server, switches.c.tool == tool))
        self._cached = None
