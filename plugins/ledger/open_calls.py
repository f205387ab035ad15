"""Calls under way, journaled so that a worker that dies leaves a record of each.

A call is written down when it is admitted (``+`` and what its row needs) and crossed out when
its record reaches the ledger (``-`` and its call id): one ``write()`` each, in a file of this
process's own that it holds an exclusive ``flock`` on. The kernel keeps what was written when the
process is SIGKILLed, runs out of memory or is stopped by gunicorn's timeout; the next process to
start (gunicorn's replacement worker) finds the file nobody holds and turns each call still open
into a ``worker_lost`` row: its prompt at the admission's estimate, what was relayed before the
death not counted. Rows carry the call's id, so a row the ledger did write is never doubled.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time

import orjson

from agent_portal import ChatRecord

log = logging.getLogger("agent_portal.ledger")
SUFFIX = ".open"
COMPACT_BYTES = 1024 * 1024  # past this the file is rewritten with only the calls still open
LOST = ("The worker serving this call died (killed, out of memory or past its timeout) before the call ended; "
        "the prompt is the admission's estimate and what was relayed before is not counted.")


class OpenCall:
    """The mark a journaled call carries among its reservation's holds."""

    __slots__ = ("call_id", "journal")

    def __init__(self, call_id: str, journal: "OpenCalls"):
        self.call_id, self.journal = call_id, journal

    def handed_over(self) -> None:
        """The call is ended by another process now (``MeteredCall.handover``): not ours to report."""
        self.journal.closed(self)


class OpenCalls:
    """This process's journal of admitted calls that have not ended, under ``directory``."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = None
        self._pid = None
        self._path = None
        self._open: dict[str, bytes] = {}  # call id -> its line, for compaction
        self._size = 0
        self._live = 0  # bytes of the lines of the calls still open

    def opened(self, record, target, prompt_tokens: int) -> OpenCall | None:
        """Write down an admitted call (its ``record``, the ``target`` it was admitted for);
        returns its mark (None when the disk refused it)."""
        entry = {"call_id": record.call_id, "request_id": record.request_id, "actor_id": record.actor_id,
                 "actor_role": record.actor_role, "model": record.model,
                 "backend": record.backend or target.backend.name,
                 "upstream_model": record.upstream_model or target.upstream_model, "stream": record.stream,
                 "key_id": record.key_id, "session_id": record.session_id, "started_at": record.started_at,
                 "prompt_tokens": prompt_tokens, "input_cost_per_token": target.input_cost_per_token}
        line = b"+" + orjson.dumps(entry) + b"\n"
        if not self._write(line, record.call_id, line):
            return None
        return OpenCall(record.call_id, self)

    def closed(self, mark: OpenCall) -> None:
        """Cross out a call whose record reached the ledger."""
        self._write(b"-" + mark.call_id.encode() + b"\n", mark.call_id, None)

    def _write(self, data: bytes, call_id: str, keep: bytes | None) -> bool:
        with self._lock:
            try:
                if self._fd is None or self._pid != os.getpid():
                    self._start_file()
                os.write(self._fd, data)
                self._size += len(data)
                if keep is None:
                    self._live -= len(self._open.pop(call_id, b""))
                else:
                    self._open[call_id] = keep
                    self._live += len(keep)
                # rewritten once it is mostly crossed-out lines: with many calls open, compacting
                # at every write past COMPACT_BYTES would copy them all each time
                if self._size > max(COMPACT_BYTES, 2 * self._live):
                    self._compact()
                return True
            except OSError as exc:
                log.warning("ledger: could not journal an open call: %s", exc)
                return False

    def _start_file(self, lines: bytes = b"") -> None:
        path = os.path.join(self.directory, f"{os.getpid()}-{time.time_ns()}{SUFFIX}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if lines:
            os.write(fd, lines)
        old_fd, old_path, same_process = self._fd, self._path, self._pid == os.getpid()
        self._fd, self._path, self._pid, self._size = fd, path, os.getpid(), len(lines)
        if old_fd is not None and same_process:
            os.unlink(old_path)  # while still held: nobody can take it for a dead process's
            os.close(old_fd)
        elif old_fd is not None:  # a forked child's copy of its parent's file: not ours to remove
            os.close(old_fd)
            self._open, self._live = {}, 0

    def _compact(self) -> None:
        self._start_file(b"".join(self._open.values()))

    def close(self) -> None:
        """At a clean shutdown where every call has ended, the file goes; one still open stays
        for the next process to report."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid() and not self._open:
                os.unlink(self._path)
                os.close(self._fd)
                self._fd = None

    def recover(self) -> list[ChatRecord]:
        """Return a ``worker_lost`` record for each call left open by a process that is gone,
        and remove its file."""
        lost: list[ChatRecord] = []
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if not name.endswith(SUFFIX) or path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                with os.fdopen(os.dup(fd), "rb") as handle:
                    data = handle.read()
                ended_at = os.fstat(fd).st_mtime
                lost += _lost_records(data, ended_at)
                os.unlink(path)
            finally:
                os.close(fd)
        return lost


def _lost_records(data: bytes, ended_at: float) -> list[ChatRecord]:
    entries: dict[str, dict] = {}
    for line in data.splitlines():
        try:
            if line.startswith(b"+"):
                entry = orjson.loads(line[1:])
                entries[entry["call_id"]] = entry
            elif line.startswith(b"-"):
                entries.pop(line[1:].decode(), None)
        except (ValueError, KeyError, UnicodeDecodeError):
            continue  # a line cut by the death itself
    records = []
    for entry in entries.values():
        price = entry.pop("input_cost_per_token")
        prompt = int(entry.pop("prompt_tokens"))
        record = ChatRecord(**entry, prompt_tokens=prompt, completion_tokens=0, outcome="worker_lost", status=502,
                            partial=True, usage_source="estimated", error=LOST,
                            cost=prompt * price if price else 0.0, cost_source="config" if price else None,
                            duration=max(0.0, ended_at - entry["started_at"]))
        records.append(record)
    return records
