"""Counters that reserve atomically: in-process, or in Redis so every worker and instance shares them.

``reserve`` adds an amount only while the counter is under its limit and would stay under its
ceiling (the limit plus the allowed overshoot), in one step, so two workers can never both
take the last of a budget and one large call cannot run far past it. ``adjust`` settles a
reservation with the real figure.

A counter that does not exist yet starts from a seed (the ledger's spend so far) and gets a
new generation: a reservation settles only against the generation it was made in, so a hold
made before Redis lost its data is never subtracted from the counter rebuilt after. No
counter goes below zero.
"""
from __future__ import annotations

import threading
import time
import uuid

PREFIX = "agent-portal:v2:"
RESERVED, AT_LIMIT, PAST_CEILING = 1, 0, 2

# KEYS[1] counter (a hash: v value, g generation); ARGV: amount, limit, ttl seconds, seed ("" when
# the caller has none yet), ceiling, a new generation. Returns {status, value, generation}: status
# RESERVED, AT_LIMIT, PAST_CEILING, or -1 when missing and no seed was given.
_RESERVE = """
local v = redis.call('HGET', KEYS[1], 'v')
if not v then
  if ARGV[4] == '' then return {-1, '0', ''} end
  redis.call('HSET', KEYS[1], 'v', ARGV[4], 'g', ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  v = ARGV[4]
end
local g = redis.call('HGET', KEYS[1], 'g')
if tonumber(v) >= tonumber(ARGV[2]) then return {0, v, g} end
if tonumber(v) + tonumber(ARGV[1]) > tonumber(ARGV[5]) then return {2, v, g} end
local total = redis.call('HINCRBYFLOAT', KEYS[1], 'v', ARGV[1])
return {1, total, g}
"""
# KEYS[1] counter; ARGV: delta, generation. Settles only the generation the hold was made in (a
# new period's or a rebuilt counter must not inherit an old one's corrections), never below 0.
_ADJUST = """
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[2] then return false end
local total = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 'v', ARGV[1]))
if total < 0 then redis.call('HSET', KEYS[1], 'v', '0') end
return true
"""

# KEYS[1] counter; ARGV: amount, ceiling, generation. Adds to a hold already made: past the
# ceiling refused, a rebuilt counter (another generation) left alone ({-1}).
_EXTEND = """
local v = redis.call('HGET', KEYS[1], 'v')
if not v or redis.call('HGET', KEYS[1], 'g') ~= ARGV[3] then return -1 end
if tonumber(v) + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 2 end
redis.call('HINCRBYFLOAT', KEYS[1], 'v', ARGV[1])
return 1
"""
GONE = -1


def new_generation() -> str:
    return uuid.uuid4().hex[:12]


class MemoryCounters:
    """Counters in this process (one worker, or tests)."""

    def __init__(self):
        self._values: dict[str, list] = {}  # key -> [value, expires_at, generation]
        self._lock = threading.Lock()

    def _live(self, key: str):
        entry = self._values.get(key)
        if entry is not None and entry[1] <= time.time():
            del self._values[key]
            return None
        return entry

    def reserve(self, key: str, amount: float, limit: float, ttl: int, seed,
                ceiling: float) -> tuple[int, float, str]:
        """Add ``amount`` when the counter is under ``limit`` and would stay at most ``ceiling``;
        returns (``RESERVED``, ``AT_LIMIT`` or ``PAST_CEILING``; the value after or as it was;
        the counter's generation, for :meth:`adjust`).

        ``seed()`` gives the starting value of a counter that does not exist yet.
        """
        with self._lock:
            entry = self._live(key)
        if entry is None:
            start = float(seed())
            with self._lock:
                if self._live(key) is None:
                    self._values[key] = [start, time.time() + ttl, new_generation()]
        with self._lock:
            entry = self._live(key) or [0.0, time.time() + ttl, new_generation()]
            value, generation = entry[0], entry[2]
            if value >= limit:
                return AT_LIMIT, value, generation
            if value + amount > ceiling:
                return PAST_CEILING, value, generation
            self._values[key] = [value + amount, entry[1], generation]
            return RESERVED, value + amount, generation

    def extend(self, key: str, amount: float, ceiling: float, generation: str) -> int:
        """Add ``amount`` to a hold made in ``generation`` unless that takes the counter past
        ``ceiling``; returns ``RESERVED``, ``PAST_CEILING`` or ``GONE`` (another generation)."""
        with self._lock:
            entry = self._live(key)
            if entry is None or entry[2] != generation:
                return GONE
            if entry[0] + amount > ceiling:
                return PAST_CEILING
            entry[0] += amount
            return RESERVED

    def adjust(self, key: str, delta: float, generation: str) -> None:
        """Add ``delta`` (negative to give back) to the counter, if it is still ``generation``."""
        with self._lock:
            entry = self._live(key)
            if entry is not None and entry[2] == generation:
                entry[0] = max(0.0, entry[0] + delta)

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
        self._extend = self.client.register_script(_EXTEND)

    def reserve(self, key: str, amount: float, limit: float, ttl: int, seed,
                ceiling: float) -> tuple[int, float, str]:
        args = [repr(amount), repr(limit), ttl, "", repr(ceiling), new_generation()]
        status, value, generation = self._reserve(keys=[PREFIX + key], args=args)
        if int(status) == -1:
            args[3] = repr(float(seed()))
            status, value, generation = self._reserve(keys=[PREFIX + key], args=args)
        return int(status), float(value), generation.decode() if isinstance(generation, bytes) else generation

    def extend(self, key: str, amount: float, ceiling: float, generation: str) -> int:
        return int(self._extend(keys=[PREFIX + key], args=[repr(amount), repr(ceiling), generation]))

    def adjust(self, key: str, delta: float, generation: str) -> None:
        if delta:
            self._adjust(keys=[PREFIX + key], args=[repr(delta), generation])

    def get(self, key: str) -> float | None:
        value = self.client.hget(PREFIX + key, "v")
        return None if value is None else float(value)


def counters_for(url: str):
    """Return the counters for a limit storage URL: Redis for ``redis://``/``rediss://``, else memory."""
    if url.startswith(("redis://", "rediss://")):
        return RedisCounters(url)
    return MemoryCounters()
