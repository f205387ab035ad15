"""Delivering chat records to ``portal_chat_completed`` off the request path."""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

from .hooks import call_each

calls_log = logging.getLogger("agent_portal.calls")

_STOP = object()


class ChatRecordDispatcher:
    """A bounded queue and one background worker that hands each record to every plugin.

    The worker starts on the first record (after gunicorn forks). Each plugin's hook runs on
    its own, so one that raises neither loses the record for the others nor reaches the caller.
    """

    def __init__(self, portal, maxsize: int = 100_000):
        self.portal = portal
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        self.delivered = 0
        self._thread = None
        self._pid = None
        self._lock = threading.Lock()

    def submit(self, record) -> bool:
        """Queue ``record``; returns False (and counts a drop) when the queue is full."""
        if self._thread is None or self._pid != os.getpid():
            self._start()
        try:
            self.queue.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="chat-records", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            record = self.queue.get()
            try:
                if record is _STOP:
                    return
                self.deliver(record)
            finally:
                self.queue.task_done()

    def deliver(self, record) -> None:
        """Hand ``record`` to each plugin's ``portal_chat_completed``, isolating failures, and
        log one line for the call (a failed one as a warning)."""
        call_each(self.portal.hook.portal_chat_completed, portal=self.portal, record=record)
        self.delivered += 1
        level = logging.INFO if record.outcome == "ok" else logging.WARNING
        if calls_log.isEnabledFor(level):
            calls_log.log(level, "%s %s %s %s %.2fs %d+%d tokens $%.6f%s", record.actor_id, record.model,
                          record.outcome, record.status, record.duration, record.prompt_tokens,
                          record.completion_tokens, record.cost, f" ({record.error})" if record.error else "",
                          extra={"request_id": record.request_id})

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until every queued record has been delivered, up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), then end the worker."""
        if self._thread is None:
            return
        try:
            self.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
