"""The ledger's spill journal: rows that memory cannot hold, on local disk until the database takes them.

Each process appends JSON lines to a file of its own (``<pid>-<start>.jsonl``), flushed and
fsynced in batches, and holds an exclusive ``flock`` on it while it does. Replay takes every
file nobody holds (a sealed file of this process, or one a stopped or crashed process left),
writes its rows in batches and deletes it once all are stored. Rows carry their ``call_id`` and
the database ignores one it already has, so a file replayed twice (a crash between the last
batch and the delete) still counts each call once.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time

log = logging.getLogger("agent_portal.ledger")
SUFFIX = ".jsonl"


class Journal:
    """Append-only files of ledger rows under ``directory``."""

    def __init__(self, directory: str, sync_every: int = 200):
        self.directory = directory
        self.sync_every = sync_every
        os.makedirs(directory, exist_ok=True)
        self._handle = None
        self._path: str | None = None
        self._unsynced = 0
        self._lock = threading.Lock()
        self.rows = sum(_count_lines(p) for p in self._files())  # waiting on disk, all files
        self.oldest_at: float | None = min((_created(p) for p in self._files()), default=None)
        self.write_errors = 0
        self.last_error: str | None = None
        self._offsets: dict[str, int] = {}  # where a replay cut short by its budget resumes

    # --- writing ---------------------------------------------------------------------------
    def append(self, rows: list[dict]) -> bool:
        """Append ``rows``; returns False (nothing written) when the disk refuses them."""
        lines = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
        with self._lock:
            try:
                if self._handle is None:
                    self._open()
                self._handle.write(lines)
                self._unsynced += len(rows)
                if self._unsynced >= self.sync_every:
                    self._sync_locked()
            except OSError as exc:
                self.write_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                return False
            self.rows += len(rows)
            if self.oldest_at is None:
                self.oldest_at = time.time()
        return True

    def _open(self) -> None:
        path = os.path.join(self.directory, f"{os.getpid()}-{time.time_ns()}{SUFFIX}")
        handle = open(path, "a", encoding="utf-8")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._handle, self._path = handle, path

    def sync(self) -> None:
        """Flush and fsync what was appended since the last sync."""
        with self._lock:
            try:
                self._sync_locked()
            except OSError as exc:
                self.write_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"

    def _sync_locked(self) -> None:
        if self._handle is not None and self._unsynced:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._unsynced = 0

    def seal(self) -> None:
        """Close this process's file (synced), so replay may take it; the next append opens a new one."""
        with self._lock:
            if self._handle is None:
                return
            try:
                self._sync_locked()
            finally:
                self._handle.close()  # releases the flock
                self._handle = None

    # --- replaying -------------------------------------------------------------------------
    def _files(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        return [os.path.join(self.directory, n) for n in names if n.endswith(SUFFIX)]

    def replay(self, write_batch, batch_size: int, max_rows: int | None = None) -> bool:
        """Write unheld files' rows through ``write_batch(rows)``, deleting each file once done.

        Writes at most ``max_rows`` per call (so a long journal never keeps the writer from the
        rows arriving meanwhile), resuming where the last call stopped. Returns True when nothing
        replayable is left, False when rows remain; ``write_batch`` raising leaves the file for
        the next try (replayed from its start: the database skips what it already has).
        """
        if self.rows == 0 and self.oldest_at is None:
            return True
        self.seal()
        budget = max_rows if max_rows is not None else float("inf")
        for path in self._files():
            if budget <= 0:
                return False
            try:
                handle = open(path, "r", encoding="utf-8")
            except OSError:
                continue
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # another process is appending to it or replaying it
                if not os.path.exists(path):
                    continue  # replayed and deleted by another process meanwhile
                handle.seek(self._offsets.get(path, 0))
                finished = True
                while True:
                    if budget <= 0:
                        finished = False
                        break
                    batch = []
                    for line in iter(handle.readline, ""):
                        try:
                            batch.append(json.loads(line))
                        except ValueError:
                            log.error("ledger journal %s: skipped a torn line", path)
                        if len(batch) >= min(batch_size, budget):
                            break
                    if not batch:
                        break
                    try:
                        write_batch(batch)
                    except Exception:
                        self._offsets.pop(path, None)
                        raise
                    budget -= len(batch)
                    with self._lock:
                        self.rows = max(0, self.rows - len(batch))
                if not finished:
                    self._offsets[path] = handle.tell()
                    return False
                os.unlink(path)
                self._offsets.pop(path, None)
                log.info("ledger: replayed the journal %s", os.path.basename(path))
        with self._lock:
            if not self._files():
                self.rows, self.oldest_at = 0, None
            else:
                self.oldest_at = min((_created(p) for p in self._files()), default=None)
        return True

    def on_disk(self) -> dict:
        """Return what every process's journal holds on disk: ``{"files", "bytes", "oldest_age_seconds"}``."""
        files, size, oldest = 0, 0, None
        for path in self._files():
            try:
                size += os.stat(path).st_size
            except OSError:
                continue
            files += 1
            oldest = _created(path) if oldest is None else min(oldest, _created(path))
        return {"files": files, "bytes": size,
                "oldest_age_seconds": round(time.time() - oldest, 1) if oldest is not None else 0.0}

    def close(self) -> None:
        """Sync and close this process's file; it is replayed by whoever starts next."""
        self.seal()


def _created(path: str) -> float:
    """Return when a journal file was started: from its name (``<pid>-<ns>``), else its mtime."""
    try:
        return int(os.path.basename(path).split("-", 1)[1].split(".", 1)[0]) / 1e9
    except (IndexError, ValueError):
        try:
            return os.stat(path).st_mtime
        except OSError:
            return time.time()


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0
