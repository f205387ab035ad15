"""The app's ledger: the writer, its journal, and the queries over what was stored."""
from __future__ import annotations

import hashlib
import logging
import os
import time
from datetime import datetime, timezone

import sqlalchemy as sa

from agent_portal.database import create_engine_for
from agent_portal.usage import CallFacts, aggregate, kind_of

from .journal import Journal
from .open_calls import OpenCalls
from .schema import calls, migrate, to_row
from .writer import LedgerWriter

log = logging.getLogger("agent_portal.ledger")
LOSING_WINDOW = 60.0  # seconds since the last lost record during which health says down


def default_journal_dir(database_url: str) -> str:
    """Return where the journal lives when config does not say: beside a SQLite file, else
    ``./agent-portal-journal/<hash of the database URL>`` (one journal per database)."""
    if database_url.startswith("sqlite:///") and database_url != "sqlite:///:memory:":
        return database_url[len("sqlite:///"):] + ".journal"
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return os.path.join("agent-portal-journal", digest)


class Ledger:
    """The writer plus queries over what it stored."""

    def __init__(self, portal, settings: dict, on_stats=None):
        url = settings.get("database_url") or portal.settings["database_url"]
        self.engine = portal.database() if url == portal.settings["database_url"] else create_engine_for(url)
        self.settings = settings
        journal = self.open_calls = None
        if settings["journal"]:
            directory = settings.get("journal_dir") or default_journal_dir(url)
            try:
                journal = Journal(directory)
                self.open_calls = OpenCalls(os.path.join(directory, "open"))
            except OSError as exc:
                log.error("ledger: no journal at %s (%s); records past max_queue will be dropped",
                          directory, exc)
        self.writer = LedgerWriter(self.engine, settings["max_queue"], settings["batch_size"],
                                   settings["flush_seconds"], journal=journal, on_stats=on_stats)
        try:
            migrate(self.engine)
        except sa.exc.OperationalError as exc:
            # Boot anyway: records queue and the writer creates the schema on its first
            # successful write, so a database that is late costs nothing.
            self.writer.needs_schema = True
            log.warning("ledger: database unreachable at startup, records will queue: %s",
                        str(exc).splitlines()[0][:200])
        lost = self.open_calls.recover() if self.open_calls is not None else []
        if lost:
            log.warning("ledger: %d call(s) were open on a worker that died; recorded as worker_lost", len(lost))
            for record in lost:
                self.writer.add(to_row(record))
        waiting = journal.rows if journal is not None else 0
        if waiting:
            log.info("ledger: %d records wait in the journal from an earlier run; replaying", waiting)
            self.writer.start()

    def facts(self, query) -> list[CallFacts]:
        """Return the facts of every stored call in ``query``'s range and filters."""
        stmt = sa.select(calls.c.actor_id, calls.c.model, calls.c.backend, calls.c.started_at,
                         calls.c.prompt_tokens, calls.c.completion_tokens, calls.c.cost,
                         calls.c.outcome, calls.c.duration, calls.c.key_id) \
            .where(calls.c.started_at >= query.start, calls.c.started_at < query.end)
        if query.user:
            stmt = stmt.where(calls.c.actor_id == query.user)
        if query.model:
            stmt = stmt.where(calls.c.model == query.model)
        if query.backend:
            stmt = stmt.where(calls.c.backend == query.backend)
        if query.key:
            stmt = stmt.where(calls.c.key_id == query.key)
        with self.engine.connect() as conn:
            found = [CallFacts(user=r.actor_id, model=r.model, backend=r.backend, key=r.key_id,
                               started_at=r.started_at if r.started_at.tzinfo else
                               r.started_at.replace(tzinfo=timezone.utc),
                               prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                               cost=r.cost, ok=r.outcome == "ok", latency_ms=r.duration * 1000)
                     for r in conn.execute(stmt)]
        return [f for f in found if kind_of(f.model, f.backend) == query.kind] if query.kind else found

    def usage(self, query) -> list[dict]:
        """Return the usage rows of ``query`` (see ``agent_portal.usage``)."""
        return aggregate(self.facts(query), query)

    def spend(self, user: str, since: datetime, field: str = "actor_id") -> float:
        """Return what ``user``'s calls (or, with ``field="key_id"``, an API key's) since
        ``since`` cost, in USD: the stored rows, plus the rows still in this worker's memory
        queue and in every worker's journal (a database that was away has not got them yet).
        Raises when the database cannot answer."""
        stmt = sa.select(sa.func.coalesce(sa.func.sum(calls.c.cost), 0.0)) \
            .where(calls.c[field] == user, calls.c.started_at >= since)
        with self.engine.connect() as conn:
            stored = float(conn.execute(stmt).scalar() or 0.0)
        start = since.timestamp()
        queued = sum(float(row.get("cost") or 0.0) for _at, row in list(self.writer.queue)
                     if row.get(field) == user and float(row.get("started_at") or 0) >= start)
        journal = self.writer.journal
        return stored + queued + (journal.spend(user, start, field) if journal is not None else 0.0)

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

    def health(self) -> dict:
        """Return the ledger's health: ``down`` only while records are being lost, ``degraded``
        while the backlog or its age passes its threshold or the database is away."""
        writer = self.writer
        backlog = writer.backlog_figures()
        figures = {"queued": backlog["queued"], "journaled": backlog["journaled"],
                   "journal_bytes_all_workers": backlog["journal_bytes"],
                   "oldest_age_seconds": backlog["oldest_age_seconds"],
                   "dropped": writer.dropped, "written": writer.written}
        waiting = backlog["queued"] + backlog["journaled"]
        database_error = None
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            database_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if writer.last_drop_at is not None and time.monotonic() - writer.last_drop_at < LOSING_WINDOW:
            cause = writer.journal.last_error if writer.journal else "no journal is configured"
            return {"status": "down", "detail": "records are being lost: memory is full and the journal "
                    f"cannot take them ({cause})", **figures}
        reasons = []
        if database_error or writer.last_error:
            reasons.append(f"database unreachable ({database_error or writer.last_error}); records wait")
        if waiting > self.settings["backlog_warning"]:
            reasons.append(f"{waiting} records wait to be written")
        if backlog["journal_files"]:  # any worker's: the journal holds records only while the database is behind
            reasons.append(f"{backlog['journal_bytes']} bytes of records wait in the journal")
        if figures["oldest_age_seconds"] > self.settings["age_warning_seconds"]:
            reasons.append(f"the oldest unwritten record is {figures['oldest_age_seconds']:.0f}s old")
        if reasons:
            return {"status": "degraded", "detail": "; ".join(reasons), **figures}
        return {"status": "up", "detail": "writing", **figures}
