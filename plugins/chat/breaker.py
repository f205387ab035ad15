"""A circuit breaker per upstream target (backend, model): after ``failures`` failures in a
row a target is skipped for ``cooloff`` seconds, then one call probes it; a success closes it.

Kept in Redis when ``portal.redis_url`` is set (every worker and instance sees the same
state), and always in this process too, so Redis going away or coming back empty forgets
nothing (see :class:`Breaker`).
"""
from __future__ import annotations

import logging
import threading
import time

from agent_portal.outages import Outage

log = logging.getLogger("agent_portal.chat")


class MemoryCircuits:
    """Breaker state in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict[str, dict] = {}

    def get(self, key: str) -> dict:
        with self._lock:
            return dict(self._state.get(key, {"failures": 0, "open_until": 0.0}))

    def failure(self, key: str) -> int:
        with self._lock:
            state = self._state.setdefault(key, {"failures": 0, "open_until": 0.0})
            state["failures"] += 1
            return state["failures"]

    def open(self, key: str, until: float) -> None:
        with self._lock:
            state = self._state.setdefault(key, {"failures": 0, "open_until": 0.0})
            state["open_until"], state["opened_at"] = until, time.time()

    def claim_probe(self, key: str, seconds: float) -> bool:
        with self._lock:
            state = self._state.setdefault(key, {"failures": 0, "open_until": 0.0})
            if state.get("probe_until", 0.0) > time.time():
                return False
            state["probe_until"] = time.time() + seconds
            return True

    def reset(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._state)


class RedisCircuits:
    """Breaker state in Redis, under ``ap:circuit:<target>``."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def _key(self, key: str) -> str:
        return f"ap:circuit:{key}"

    def get(self, key: str) -> dict:
        """Return the circuit (all zero when Redis has no trace of it: it never failed, or its
        data was lost); ``closed_at``: when a success last closed it."""
        values = self.client.hgetall(self._key(key))
        return {"failures": int(values.get(b"failures", 0)), "open_until": float(values.get(b"open_until", 0.0)),
                "closed_at": float(values.get(b"closed_at", 0.0))}

    def failure(self, key: str) -> int:
        count = self.client.hincrby(self._key(key), "failures", 1)
        self.client.expire(self._key(key), 3600)
        return int(count)

    def open(self, key: str, until: float) -> None:
        self.client.hset(self._key(key), "open_until", until)

    def claim_probe(self, key: str, seconds: float) -> bool:
        return bool(self.client.set(self._key(key) + ":probe", 1, nx=True, px=int(seconds * 1000)))

    def reset(self, key: str) -> None:
        """Close the circuit, leaving when: a worker that saw it open before then takes it as closed."""
        pipe = self.client.pipeline()
        pipe.hset(self._key(key), mapping={"failures": 0, "open_until": 0, "closed_at": time.time()})
        pipe.expire(self._key(key), 3600)
        pipe.delete(self._key(key) + ":probe")
        pipe.execute()

    def keys(self) -> list[str]:
        return [k.decode()[len("ap:circuit:"):] for k in self.client.scan_iter("ap:circuit:*")
                if not k.endswith(b":probe")]


class Breaker:
    """Decides whether a target may be called now, and learns from each call's outcome. Never
    fails a call itself.

    Every worker keeps its own copy of what it learned (``local``) beside the shared store:
    while Redis is away the local copy decides (a dead upstream is still skipped, one probe per
    cool-off), and when Redis answers again, a circuit it lost (a restart) is put back from the
    local copy rather than taken as closed."""

    def __init__(self, failures: int, cooloff: float, redis_url: str | None = None):
        self.failures, self.cooloff = failures, cooloff
        self.local = MemoryCircuits()
        self.shared = RedisCircuits(redis_url) if redis_url else None
        self.outage = Outage(log, "circuit breaker store (Redis)")

    @staticmethod
    def key(target) -> str:
        return f"{target.backend.name}/{target.upstream_model}"

    def _shared(self, method, *args):
        """Return ``method(*args)`` on the shared store, or None when it cannot answer."""
        try:
            result = method(*args)
        except Exception as exc:
            self.outage.failed(exc)
            return None
        self.outage.answered()
        return result

    def _state(self, key: str) -> tuple[dict, bool]:
        """Return the circuit of ``key`` and whether the shared store gave it: the shared state
        merged with this worker's (the later opening wins, and goes back to the store)."""
        mine = self.local.get(key)
        if self.shared is None:
            return mine, False
        theirs = self._shared(self.shared.get, key)
        if theirs is None:
            return mine, False
        if theirs["closed_at"] >= mine.get("opened_at", 0.0) and mine["open_until"]:
            self.local.reset(key)  # another worker's probe closed it since this one saw it open
            return theirs, True
        if mine["open_until"] > theirs["open_until"]:  # the store lost it (a restart): put it back
            self._shared(self.shared.open, key, mine["open_until"])
            return {**theirs, "open_until": mine["open_until"], "failures": max(mine["failures"],
                                                                              theirs["failures"])}, True
        if theirs["open_until"] > mine["open_until"]:
            self.local.open(key, theirs["open_until"])
        return theirs, True

    def allow(self, target) -> bool:
        """Return True when ``target`` is closed, or open past its cool-off and this call is the probe."""
        key = self.key(target)
        state, shared = self._state(key)
        if state["open_until"] <= 0:
            return True
        if time.time() < state["open_until"]:
            return False
        if shared:
            claimed = self._shared(self.shared.claim_probe, key, self.cooloff)
            if claimed is not None:
                return bool(claimed)
        return self.local.claim_probe(key, self.cooloff)

    def success(self, target) -> None:
        key = self.key(target)
        mine = self.local.get(key)
        if mine["failures"] or mine["open_until"]:
            self.local.reset(key)
        if self.shared is not None:
            state = self._shared(self.shared.get, key)
            if state is not None and (state["failures"] or state["open_until"]):
                self._shared(self.shared.reset, key)

    def failure(self, target) -> None:
        key = self.key(target)
        count = self.local.failure(key)
        if self.shared is not None:
            shared_count = self._shared(self.shared.failure, key)
            count = max(count, shared_count or 0)
        if count >= self.failures:
            until = time.time() + self.cooloff
            self.local.open(key, until)
            if self.shared is not None:
                self._shared(self.shared.open, key, until)

    def report(self) -> dict:
        """Return each target the breaker knows: ``{target: {state, failures, open_for_seconds}}``
        (this worker's own knowledge while the shared store is away)."""
        now, out = time.time(), {}
        keys = set(self.local.keys())
        if self.shared is not None:
            keys.update(self._shared(self.shared.keys) or ())
        for key in sorted(keys):
            state, _shared = self._state(key)
            opened = state["open_until"] > 0
            out[key] = {"state": "open" if opened and now < state["open_until"] else
                        "probing" if opened else "closed", "failures": state["failures"],
                        "open_for_seconds": round(max(0.0, state["open_until"] - now), 1)}
        return out
