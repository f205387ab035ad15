"""Counters that reserve atomically: in-process, or in Redis so every worker and instance shares them.

``reserve`` adds an amount only while the counter is under its limit, in one step, so two
workers can never both take the last of a budget; ``adjust`` settles a reservation with the
real figure. A counter that does not exist yet starts from a seed (the ledger's spend so far).
"""
from __future__ import annotations

import threading
import time

PREFIX = "agent-portal:"

# KEYS[1] counter; ARGV: amount, limit, ttl seconds, seed ("" when the caller has none yet).
# Returns {status, value}: 1 reserved, 0 over the limit, -1 missing and no seed given.
_RESERVE = """
local v = redis.call('GET', KEYS[1])
if not v then
  if ARGV[4] == '' then return {-1, '0'} end
  redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[3])
  v = ARGV[4]
end
if tonumber(v) >= tonumber(ARGV[2]) then return {0, v} end
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
return {1, total}
"""
# KEYS[1] counter; ARGV: delta. Settles only a counter that still exists (a new period's
# counter must not inherit the last one's corrections).
_ADJUST = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1]) end
return false
"""


class MemoryCounters:
    """Counters in this process (one worker, or tests)."""

    def __init__(self):
        self._values: dict[str, tuple[float, float]] = {}  # key -> (value, expires_at)
        self._lock = threading.Lock()

    def _live(self, key: str):
        entry = self._values.get(key)
        if entry is not None and entry[1] <= time.time():
            del self._values[key]
            return None
        return entry

    def reserve(self, key: str, amount: float, limit: float, ttl: int, seed) -> tuple[bool, float]:
        """Add ``amount`` when the counter is under ``limit``; returns (reserved, value).

        ``seed()`` gives the starting value of a counter that does not exist yet.
        """
        with self._lock:
            entry = self._live(key)
        if entry is None:
            start = float(seed())
            with self._lock:
                if self._live(key) is None:
                    self._values[key] = (start, time.time() + ttl)
        with self._lock:
            value, expires = self._live(key) or (0.0, time.time() + ttl)
            if value >= limit:
                return False, value
            self._values[key] = (value + amount, expires)
            return True, value + amount

    def adjust(self, key: str, delta: float) -> None:
        """Add ``delta`` (negative to give back) to an existing counter."""
        with self._lock:
            entry = self._live(key)
            if entry is not None:
                self._values[key] = (entry[0] + delta, entry[1])

    def get(self, key: str) -> float | None:
        """Return the counter's value, None when it does not exist."""
        with self._lock:
            entry = self._live(key)
            return None if entry is None else entry[0]


class RedisCounters:
    """The same counters in Redis, each step one Lua script (atomic across workers)."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._reserve = self.client.register_script(_RESERVE)
        self._adjust = self.client.register_script(_ADJUST)

    def reserve(self, key: str, amount: float, limit: float, ttl: int, seed) -> tuple[bool, float]:
        status, value = self._reserve(keys=[PREFIX + key], args=[repr(amount), repr(limit), ttl, ""])
        if int(status) == -1:
            status, value = self._reserve(keys=[PREFIX + key],
                                          args=[repr(amount), repr(limit), ttl, repr(float(seed()))])
        return int(status) == 1, float(value)

    def adjust(self, key: str, delta: float) -> None:
        if delta:
            self._adjust(keys=[PREFIX + key], args=[repr(delta)])

    def get(self, key: str) -> float | None:
        value = self.client.get(PREFIX + key)
        return None if value is None else float(value)


def counters_for(url: str):
    """Return the counters for a limit storage URL: Redis for ``redis://``/``rediss://``, else memory."""
    if url.startswith(("redis://", "rediss://")):
        return RedisCounters(url)
    return MemoryCounters()
