"""A small per-app cache with expiry, for checked credentials."""
from __future__ import annotations

import time


class TTLCache:
    """Maps keys to values until each value's own deadline; forgets everything when full.

    Each worker keeps its own copy; it only ever saves work, never decides alone.
    """

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._data: dict = {}

    def get(self, key):
        """Return the live value for ``key``, or None."""
        entry = self._data.get(key)
        if entry is None:
            return None
        value, deadline = entry
        if deadline < time.monotonic():
            self._data.pop(key, None)
            return None
        return value

    def put(self, key, value, seconds: float) -> None:
        """Keep ``value`` for ``seconds`` (nothing when ``seconds`` <= 0)."""
        if seconds <= 0:
            return
        if len(self._data) >= self.max_entries:
            self._data.clear()
        self._data[key] = (value, time.monotonic() + seconds)

    def pop(self, key) -> None:
        """Forget ``key``."""
        self._data.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        self._data.clear()
