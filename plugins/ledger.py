"""The usage ledger: every chat record in SQLite or PostgreSQL, written in batches off the request path.

If the database goes away, records wait in memory (up to ``max_queue``) and are written when it
returns; past that bound new records are counted as dropped. Shutdown flushes what is queued.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from agent_portal import HealthCheck, UsageProvider, hookimpl
from agent_portal.database import create_engine_for
from agent_portal.usage import CallFacts, aggregate

log = logging.getLogger("agent_portal.ledger")
NAME = "ledger"

metadata = sa.MetaData()
calls = sa.Table(
    "portal_chat_calls", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(128), nullable=False, unique=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor_id", sa.String(200), nullable=False, index=True),
    sa.Column("actor_role", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(32)),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("backend", sa.String(200), nullable=False, default=""),
    sa.Column("upstream_model", sa.String(200), nullable=False, default=""),
    sa.Column("stream", sa.Boolean, nullable=False, default=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cost", sa.Float, nullable=False, default=0.0),
    sa.Column("ttft", sa.Float),
    sa.Column("duration", sa.Float, nullable=False, default=0.0),
    sa.Column("outcome", sa.String(40), nullable=False),
    sa.Column("status", sa.Integer, nullable=False, default=200),
    sa.Column("partial", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.Text),
    sa.Column("upstream_call_id", sa.String(200)),
    sa.Column("session_id", sa.String(200)),
)
COLUMNS = [c.name for c in calls.columns if c.name != "id"]


def migrate(engine: sa.Engine) -> None:
    """Create the ledger's tables, and add any column a newer portal defines to an older table."""
    metadata.create_all(engine)
    inspector = sa.inspect(engine)
    present = {c["name"] for c in inspector.get_columns(calls.name)}
    with engine.begin() as conn:
        for column in calls.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE {calls.name} ADD COLUMN "{column.name}" {kind}'))
                log.info("ledger: added column %s", column.name)


def to_row(record) -> dict:
    """Return the ledger row of a :class:`agent_portal.ChatRecord`."""
    row = {name: getattr(record, name) for name in COLUMNS if name != "started_at"}
    row["started_at"] = datetime.fromtimestamp(record.started_at, timezone.utc)
    for name in ("actor_id", "model", "backend", "upstream_model", "upstream_call_id", "session_id"):
        if isinstance(row.get(name), str):
            row[name] = row[name][:200]
    if row.get("error"):
        row["error"] = str(row["error"])[:2000]
    return row


class LedgerWriter:
    """A bounded in-memory queue and one thread that writes it to the database in batches."""

    def __init__(self, engine: sa.Engine, max_queue: int, batch_size: int, flush_seconds: float,
                 on_stats=None):
        self.engine = engine
        self.queue: deque = deque()
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.on_stats = on_stats
        self.dropped = 0
        self.written = 0
        self.failures = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._insert = self._insert_statement()
        self.needs_schema = False
        self._flush_lock = threading.Lock()

    def _insert_statement(self):
        # A batch retried after an unknown commit must not count twice: request ids are unique.
        name = self.engine.dialect.name
        if name == "postgresql":
            return postgresql.insert(calls).on_conflict_do_nothing(index_elements=["request_id"])
        if name == "sqlite":
            return sqlite.insert(calls).on_conflict_do_nothing(index_elements=["request_id"])
        return calls.insert()

    def add(self, row: dict) -> bool:
        """Queue one row; returns False (counted in ``dropped``) when the queue is full."""
        if self._thread is None:
            self.start()
        with self._lock:
            if len(self.queue) >= self.max_queue:
                self.dropped += 1
                return False
            self.queue.append(row)
            depth = len(self.queue)
        if depth >= self.batch_size:
            self._wake.set()
        return True

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        backoff = self.flush_seconds
        while not self._stop.is_set():
            self._wake.wait(backoff)
            self._wake.clear()
            backoff = self.flush_seconds if self.flush_once() else min(max(backoff * 2, 0.5), 5.0)

    def flush_once(self) -> bool:
        """Write every queued row, batch by batch; returns False if the database failed.

        Serialised: the writer thread, shutdown and callers may all ask at once, and two flushers
        taking the same batch would pop each other's rows.
        """
        with self._flush_lock:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        while True:
            with self._lock:
                batch = [self.queue[i] for i in range(min(self.batch_size, len(self.queue)))]
            if not batch:
                self._report()
                return True
            try:
                if self.needs_schema:
                    migrate(self.engine)
                    self.needs_schema = False
                with self.engine.begin() as conn:
                    conn.execute(self._insert, batch)
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                log.warning("ledger: database write failed, %d records kept queued: %s",
                            len(self.queue), self.last_error)
                self._report()
                return False
            with self._lock:
                for _ in batch:
                    self.queue.popleft()
            self.written += len(batch)
            self.last_error = None

    def _report(self) -> None:
        if self.on_stats is not None:
            self.on_stats(len(self.queue), self.dropped)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and write what is queued, trying until ``timeout`` seconds pass."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self.queue and time.monotonic() < deadline:
            if not self.flush_once():
                time.sleep(0.2)
        if self.queue:
            log.error("ledger: %d records could not be written before shutdown", len(self.queue))


class Ledger:
    """The app's ledger: the writer plus queries over what it stored."""

    def __init__(self, portal, settings: dict):
        url = settings.get("database_url") or portal.settings["database_url"]
        self.engine = portal.database() if url == portal.settings["database_url"] else create_engine_for(url)
        metrics = portal.extensions.get("metrics")
        self.writer = LedgerWriter(self.engine, settings["max_queue"], settings["batch_size"],
                                   settings["flush_seconds"],
                                   on_stats=metrics.ledger_stats if metrics else None)
        try:
            migrate(self.engine)
        except sa.exc.OperationalError as exc:
            # Boot anyway: records queue in memory and the writer creates the schema on its
            # first successful write, so a database that is late costs nothing.
            self.writer.needs_schema = True
            log.warning("ledger: database unreachable at startup, records will queue: %s",
                        str(exc).splitlines()[0][:200])

    def facts(self, query) -> list[CallFacts]:
        """Return the facts of every stored call in ``query``'s range and filters."""
        stmt = sa.select(calls.c.actor_id, calls.c.model, calls.c.backend, calls.c.started_at,
                         calls.c.prompt_tokens, calls.c.completion_tokens, calls.c.cost,
                         calls.c.outcome, calls.c.duration) \
            .where(calls.c.started_at >= query.start, calls.c.started_at < query.end)
        if query.user:
            stmt = stmt.where(calls.c.actor_id == query.user)
        if query.model:
            stmt = stmt.where(calls.c.model == query.model)
        with self.engine.connect() as conn:
            return [CallFacts(user=r.actor_id, model=r.model, backend=r.backend,
                              started_at=r.started_at if r.started_at.tzinfo else
                              r.started_at.replace(tzinfo=timezone.utc),
                              prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                              cost=r.cost, ok=r.outcome == "ok", latency_ms=r.duration * 1000)
                    for r in conn.execute(stmt)]

    def usage(self, query) -> list[dict]:
        """Return the usage rows of ``query`` (see ``agent_portal.usage``)."""
        return aggregate(self.facts(query), query)

    def spend(self, user: str, since: datetime) -> float:
        """Return what ``user``'s calls since ``since`` cost, in USD (stored rows only)."""
        stmt = sa.select(sa.func.coalesce(sa.func.sum(calls.c.cost), 0.0)) \
            .where(calls.c.actor_id == user, calls.c.started_at >= since)
        with self.engine.connect() as conn:
            return float(conn.execute(stmt).scalar() or 0.0)

    def recent(self, limit: int = 50) -> list[dict]:
        """Return the newest stored calls, newest first."""
        stmt = sa.select(calls).order_by(calls.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = []
            for r in conn.execute(stmt).mappings():
                row = dict(r)
                row["started_at"] = row["started_at"].isoformat()
                rows.append(row)
            return rows


def ledger_of(portal) -> Ledger:
    """Return the app's :class:`Ledger`."""
    return portal.extensions[NAME]


@hookimpl
def portal_config_schema():
    return {NAME: {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "database_url": {"type": ["string", "null"]},
            "max_queue": {"type": "integer", "minimum": 1, "default": 100_000},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 500},
            "flush_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 0.5},
            "required": {"type": "boolean", "default": True},
        },
    }}


@hookimpl(trylast=True)
def portal_startup(portal):
    portal.extensions[NAME] = Ledger(portal, portal.plugin_config(NAME))


@hookimpl
def portal_chat_completed(portal, record):
    ledger_of(portal).writer.add(to_row(record))


@hookimpl
def portal_shutdown(portal):
    ledger_of(portal).writer.close()


@hookimpl
def portal_usage_providers(portal):
    return [UsageProvider("ledger", lambda portal, query: ledger_of(portal).usage(query))]


@hookimpl
def portal_health_checks(portal):
    def check(portal):
        ledger = ledger_of(portal)
        with ledger.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        writer = ledger.writer
        status = "up" if writer.last_error is None else "degraded"
        return {"status": status, "detail": writer.last_error or "writing",
                "queued": len(writer.queue), "dropped": writer.dropped, "written": writer.written}

    return [HealthCheck(NAME, check, timeout=3.0, required=portal.plugin_config(NAME)["required"])]
