"""A store that went away (Redis under the limits or the circuit breaker): one warning line per
worker per ``every`` seconds with how many calls met it, not one per call, and what health
needs to say so: since when, and why."""
from __future__ import annotations

import threading
import time


class Outage:
    """The failures of one store in this worker. ``failed`` on each failure, ``answered`` on
    each success; ``state()`` says whether the store is away now."""

    def __init__(self, logger, what: str, every: float = 10.0):
        self.log, self.what, self.every = logger, what, every
        self.since: float | None = None  # when the current outage began (wall clock)
        self.reason = ""
        self.failures = 0  # all failures of this worker
        self._unreported = 0
        self._warned_at = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: Exception) -> None:
        """Count one failure; warn at most once per ``every`` seconds, with the count since."""
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            self._unreported += 1
            self.reason = f"{type(exc).__name__}: {exc}"[:300]
            if self.since is None:
                self.since = time.time()
            if now - self._warned_at < self.every:
                return
            count, self._unreported, self._warned_at = self._unreported, 0, now
        self.log.warning("%s unavailable (%s); %d call(s) met it in the last %.0f s", self.what, self.reason,
                         count, self.every)

    def answered(self) -> None:
        """The store answered: the outage, if any, is over (said once)."""
        if self.since is None:
            return
        with self._lock:
            if self.since is None:
                return
            lasted, count = time.time() - self.since, self._unreported
            self.since, self._unreported, self._warned_at = None, 0, 0.0
        self.log.warning("%s back after %.0f s (%d more call(s) met the outage)", self.what, lasted, count)

    def describe(self) -> str:
        """Return "since HH:MM:SS UTC (reason)" of the current outage, for health ("" when none)."""
        if self.since is None:
            return ""
        return f"since {time.strftime('%H:%M:%S', time.gmtime(self.since))} UTC ({self.reason})"

    def state(self) -> dict | None:
        """Return ``{"since", "reason", "failures"}`` while the store is away, else None."""
        if self.since is None:
            return None
        return {"since": self.since, "reason": self.reason, "failures": self.failures}
