"""The ledger's writer: records queue in memory, go to the database in large batches, and spill to
the journal when memory is full or the database is away.

One background thread writes. While the database fails it backs off exponentially with jitter
(never a tight reconnect loop) and logs one warning per interval with the backlog. Records past
``max_queue`` go to the journal, not to the floor; only a journal that cannot be written loses
records, and those are counted in ``dropped``.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque

from .schema import copy_insert, for_database, insert_statement, migrate

log = logging.getLogger("agent_portal.ledger")
BACKOFF_START = 0.5
BACKOFF_CAP = 10.0
WARN_EVERY = 10.0
REPLAY_PER_FLUSH = 20_000


class LedgerWriter:
    """A bounded in-memory queue, a spill journal, and one thread that writes both to the database."""

    def __init__(self, engine, max_queue: int, batch_size: int, flush_seconds: float,
                 journal=None, on_stats=None):
        self.engine = engine
        self.queue: deque = deque()  # (queued_at, row); deque appends and pops are atomic
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.journal = journal
        self.on_stats = on_stats
        self.dropped = 0
        self.last_drop_at: float | None = None
        self.written = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.needs_schema = False
        self._insert = insert_statement(engine)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._retry_at = 0.0
        self._warned_at = 0.0
        self._failures_since_warning = 0

    # --- taking records --------------------------------------------------------------------
    def add(self, row: dict) -> bool:
        """Queue one row (in memory, or in the journal once memory is full).

        Returns False, counted in ``dropped``, only when neither can take it.
        """
        if self._thread is None:
            self.start()
        if len(self.queue) < self.max_queue:
            self.queue.append((time.time(), row))
            if len(self.queue) >= self.batch_size and time.monotonic() >= self._retry_at:
                self._wake.set()
            return True
        if self.journal is not None and self.journal.append([row]):
            return True
        self.dropped += 1
        self.last_drop_at = time.monotonic()
        return False

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
                self._thread.start()

    # --- the writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        # Wakes at least every flush_seconds (and at most every second) so the figures it
        # reports stay current; writes only when no back-off is pending.
        tick = min(self.flush_seconds, 1.0)
        while not self._stop.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            if self._stop.is_set():
                return
            if time.monotonic() >= self._retry_at:
                if not self.flush_once():  # which reports the figures itself
                    self._retry_at = time.monotonic() + self._backoff()
            else:
                if self.journal is not None and len(self.queue) >= self.batch_size:
                    self.spill()  # the database is away: keep memory small, the journal keeps the rest
                self.report()
            if self.journal is not None:
                self.journal.sync()

    def _backoff(self) -> float:
        """Return the wait before the next try, growing while the database keeps failing."""
        base = min(BACKOFF_CAP, BACKOFF_START * (2 ** min(self.consecutive_failures - 1, 10)))
        return base * random.uniform(0.5, 1.0)

    def flush_once(self) -> bool:
        """Write every row queued when called, then whatever the journal holds; returns False if
        the database failed.

        Rows that arrive meanwhile wait for the next flush: under steady load the queue is never
        empty, and a flush that chased it would never reach the journal. Serialised: the writer
        thread, shutdown and callers may all ask at once, and two flushers taking the same batch
        would pop each other's rows.
        """
        with self._flush_lock:
            ok = self._drain_memory(len(self.queue)) and self._replay_journal()
            self.report()
            return ok

    def _write(self, rows: list[dict]) -> None:
        if self.needs_schema:
            migrate(self.engine)
            self.needs_schema = False
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                copy_insert(conn, [for_database(r) for r in rows])
            else:
                conn.execute(self._insert, [for_database(r) for r in rows])

    def _drain_memory(self, count: int) -> bool:
        """Write the first ``count`` queued rows (fewer if fewer are queued)."""
        while count > 0 and self.queue:
            batch = self._head(min(self.batch_size, count))
            try:
                self._write(batch)
            except Exception as exc:
                self._failed(exc)
                return False
            self._drop_head(len(batch))
            count -= len(batch)
            self.written += len(batch)
            self._succeeded()
        return True

    def _head(self, count: int) -> list[dict]:
        """Return the first ``count`` queued rows (fewer if fewer are queued), leaving them queued
        until :meth:`_drop_head`, so a failed write loses none."""
        return [self.queue[i][1] for i in range(min(count, len(self.queue)))]

    def _drop_head(self, count: int) -> None:
        for _ in range(count):
            self.queue.popleft()

    def _replay_journal(self) -> bool:
        if self.journal is None:
            return True

        def write(rows):
            self._write(rows)
            self.written += len(rows)

        try:
            # a bounded share per flush: the rows arriving meanwhile are written in between
            self.journal.replay(write, self.batch_size, max_rows=REPLAY_PER_FLUSH)
            return True
        except Exception as exc:
            self._failed(exc)
            return False

    def _succeeded(self) -> None:
        if self.consecutive_failures:
            log.warning("ledger: database back after %d failed writes; %d records waiting",
                        self.consecutive_failures, self.backlog())
        self.consecutive_failures = 0
        self.last_error = None
        self._retry_at = 0.0

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self._failures_since_warning += 1
        self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            figures = self.backlog_figures()
            log.warning("ledger: database write failed %d times in the last %.0fs; %d records waiting "
                        "(%d in memory, %d in the journal), oldest %.0fs: %s",
                        self._failures_since_warning, min(now - self._warned_at, 1e9) if self._warned_at else 0,
                        figures["queued"] + figures["journaled"], figures["queued"], figures["journaled"],
                        figures["oldest_age_seconds"], self.last_error)
            self._warned_at = now
            self._failures_since_warning = 0

    def spill(self) -> int:
        """Move every row waiting in memory to the journal; returns how many moved."""
        if self.journal is None:
            return 0
        moved = 0
        while self.queue:
            batch = self._head(self.batch_size)
            if not self.journal.append(batch):
                break
            self._drop_head(len(batch))
            moved += len(batch)
        self.journal.sync()
        return moved

    # --- what it is holding ------------------------------------------------------------------
    def backlog_figures(self) -> dict:
        """Return what waits for the database, the journal's directory read once:
        ``{"queued", "journaled", "journal_files", "journal_bytes", "oldest_age_seconds"}``
        (the journal counts every worker's files; the oldest age covers memory and journal)."""
        queue = self.queue
        memory_age = max(0.0, time.time() - queue[0][0]) if queue else 0.0
        on_disk = self.journal.on_disk() if self.journal is not None else \
            {"files": 0, "bytes": 0, "oldest_age_seconds": 0.0}
        return {"queued": len(queue),
                "journaled": self.journal.estimated_rows(on_disk) if self.journal is not None else 0,
                "journal_files": on_disk["files"], "journal_bytes": on_disk["bytes"],
                "oldest_age_seconds": round(max(memory_age, on_disk["oldest_age_seconds"]), 1)}

    def backlog(self) -> int:
        """Return how many records wait for the database (memory plus journal)."""
        figures = self.backlog_figures()
        return figures["queued"] + figures["journaled"]

    def report(self) -> None:
        """Publish the current backlog figures to ``on_stats``."""
        if self.on_stats is not None:
            figures = self.backlog_figures()
            self.on_stats(depth=figures["queued"], dropped=self.dropped, journal=figures["journaled"],
                          oldest_age=figures["oldest_age_seconds"])

    # --- shutdown ------------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> dict:
        """Stop the thread, write what is queued until ``timeout``, journal the rest.

        Returns ``{"written": n, "journaled": n, "lost": n}`` for this shutdown.
        """
        started_written = self.written
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(min(timeout, 2.0))
        deadline = time.monotonic() + timeout
        while self.queue and time.monotonic() < deadline:
            with self._flush_lock:
                if not self._drain_memory(len(self.queue)):
                    break  # the database is away: the journal keeps the rest, no waiting
        journaled = self.spill() if self.queue else 0
        lost = len(self.queue)
        if self.journal is not None:
            self.journal.close()
        if lost:
            self.dropped += lost
            self.last_drop_at = time.monotonic()
            log.error("ledger: %d records could not be written or journaled before shutdown", lost)
        self.report()
        return {"written": self.written - started_written, "journaled": journaled, "lost": lost}
