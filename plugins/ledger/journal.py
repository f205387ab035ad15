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

from agent_portal.offload import off_loop

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
        self._row_bytes = _first_line_length(self._files()) or 450.0  # for estimating rows from sizes
        self._appended_rows = 0
        self._appended_bytes = 0
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
                self.last_error = f"{type(exc).__name__}: {exc}"
                return False
            self._appended_rows += len(rows)
            self._appended_bytes += len(lines.encode("utf-8"))
            self._row_bytes = self._appended_bytes / self._appended_rows
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
        if not self._files():
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
                if not finished:
                    self._offsets[path] = handle.tell()
                    return False
                os.unlink(path)
                self._offsets.pop(path, None)
                log.info("ledger: replayed the journal %s", os.path.basename(path))
        return True

    def spend(self, user: str, since: float, field: str = "actor_id") -> float:
        """Return the cost of ``user``'s rows (those whose ``field`` is ``user``) waiting in every
        process's files that started at or after ``since`` (epoch seconds), skipping what this
        process replayed already: spend a limit counter rebuilt now must count although the
        database has not got it yet."""
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
        # a long outage's files: read in a real thread, never on the serving loop (and no lock there)
        return off_loop(_spend_in_files, self._files(), dict(self._offsets), user, since, field)

    @property
    def rows(self) -> int:
        """Return the records waiting on disk in every process's files (see :meth:`estimated_rows`)."""
        return self.estimated_rows(self.on_disk())

    def estimated_rows(self, on_disk: dict) -> int:
        """Return the records an :meth:`on_disk` answer holds: estimated from the files' size
        (less what this process has replayed of a file it is part-way through), so every worker
        reports the same figure for the one shared directory."""
        if not on_disk["files"]:
            return 0
        waiting = max(0, on_disk["bytes"] - sum(self._offsets.values()))
        return max(1, round(waiting / self._row_bytes)) if waiting else 0

    def on_disk(self) -> dict:
        """Return what every process's journal holds on disk: ``{"files", "bytes", "oldest_age_seconds"}``."""
        files, size, oldest = 0, 0, None
        for path in self._files():
            try:
                if path == self._path:
                    with self._lock:  # this process's own file: its position counts what is buffered too
                        size += self._handle.tell() if self._handle is not None else os.stat(path).st_size
                else:
                    size += os.stat(path).st_size
            except (OSError, ValueError):
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


def _first_line_length(paths: list) -> int:
    for path in paths:
        try:
            with open(path, "rb") as handle:
                return len(handle.readline())
        except OSError:
            continue
    return 0


def _spend_in_files(paths: list, offsets: dict, user: str, since: float, field: str = "actor_id") -> float:
    """Return the cost of ``user``'s rows since ``since`` in ``paths``, each read from its
    ``offsets`` entry (what this process replayed already is skipped)."""
    needle = json.dumps(field) + ":" + json.dumps(user) + ","
    total = 0.0
    for path in paths:
        try:
            with open(path, "r", encoding="utf-8") as handle:
                handle.seek(offsets.get(path, 0))
                for line in handle:
                    if needle not in line:
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue  # a torn last line
                    if row.get(field) == user and float(row.get("started_at") or 0) >= since:
                        total += float(row.get("cost") or 0.0)
        except OSError:
            continue  # replayed and deleted meanwhile: the database has it
    return total
