"""A circuit breaker per upstream target (backend, model): after ``failures`` failures in a
row a target is skipped for ``cooloff`` seconds, then one call probes it; a success closes it.

Kept in Redis when ``portal.redis_url`` is set (every worker and instance sees the same
state), else in this process.
"""
from __future__ import annotations

import logging
import threading
import time

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
            self._state.setdefault(key, {"failures": 0, "open_until": 0.0})["open_until"] = until

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
        values = self.client.hgetall(self._key(key))
        return {"failures": int(values.get(b"failures", 0)), "open_until": float(values.get(b"open_until", 0.0))}

    def failure(self, key: str) -> int:
        count = self.client.hincrby(self._key(key), "failures", 1)
        self.client.expire(self._key(key), 3600)
        return int(count)

    def open(self, key: str, until: float) -> None:
        self.client.hset(self._key(key), "open_until", until)

    def claim_probe(self, key: str, seconds: float) -> bool:
        return bool(self.client.set(self._key(key) + ":probe", 1, nx=True, px=int(seconds * 1000)))

    def reset(self, key: str) -> None:
        self.client.delete(self._key(key), self._key(key) + ":probe")

    def keys(self) -> list[str]:
        return [k.decode()[len("ap:circuit:"):] for k in self.client.scan_iter("ap:circuit:*")
                if not k.endswith(b":probe")]


class Breaker:
    """Decides whether a target may be called now, and learns from each call's outcome. Never
    fails a call itself: when its store cannot answer, every target is allowed."""

    def __init__(self, failures: int, cooloff: float, redis_url: str | None = None):
        self.failures, self.cooloff = failures, cooloff
        self.store = RedisCircuits(redis_url) if redis_url else MemoryCircuits()

    @staticmethod
    def key(target) -> str:
        return f"{target.backend.name}/{target.upstream_model}"

    def allow(self, target) -> bool:
        """Return True when ``target`` is closed, or open past its cool-off and this call is the probe."""
        try:
            state = self.store.get(self.key(target))
            if state["open_until"] <= 0:
                return True
            if time.time() < state["open_until"]:
                return False
            return self.store.claim_probe(self.key(target), self.cooloff)
        except Exception as exc:  # a breaker that cannot answer must not stop chat
            log.warning("circuit breaker unavailable: %s", exc)
            return True

    def success(self, target) -> None:
        try:
            if self.store.get(self.key(target))["failures"]:
                self.store.reset(self.key(target))
        except Exception as exc:
            log.warning("circuit breaker unavailable: %s", exc)

    def failure(self, target) -> None:
        try:
            if self.store.failure(self.key(target)) >= self.failures:
                self.store.open(self.key(target), time.time() + self.cooloff)
        except Exception as exc:
            log.warning("circuit breaker unavailable: %s", exc)

    def report(self) -> dict:
        """Return each target the breaker knows: ``{target: {state, failures, open_for_seconds}}``."""
        now, out = time.time(), {}
        try:
            for key in self.store.keys():
                state = self.store.get(key)
                opened = state["open_until"] > 0
                out[key] = {"state": "open" if opened and now < state["open_until"] else
                            "probing" if opened else "closed", "failures": state["failures"],
                            "open_for_seconds": round(max(0.0, state["open_until"] - now), 1)}
        except Exception as exc:
            return {"error": str(exc)}
        return out
