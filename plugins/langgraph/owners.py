"""Who owns each thread, remembered for a few seconds so a thread route does not ask the agent
server every time: in Redis when ``portal.redis_url`` is set, so a thread deleted through one
worker is forgotten by every worker at once (its id may be used again, by anyone), else in this
process. A store that cannot answer is a miss: the server is asked, never a stale entry trusted."""
from __future__ import annotations

import logging

from agent_portal.cache import TTLCache

log = logging.getLogger("agent_portal.langgraph")
PREFIX = "agent-portal:thread-owner:"
SECONDS = 10  # how long a thread deleted outside the portal may still be taken for its old owner's


class ThreadOwners:
    """``get``/``put``/``forget`` a thread's owner (an id, or "" for a thread nobody owns)."""

    def __init__(self, redis_url: str | None):
        self.local = TTLCache(max_entries=50_000)
        self.redis = None
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)

    def get(self, thread_id: str) -> str | None:
        """Return the remembered owner of ``thread_id``, or None when not known."""
        if self.redis is None:
            return self.local.get(thread_id)
        try:
            value = self.redis.get(PREFIX + thread_id)
        except Exception as exc:
            log.debug("thread owners: Redis did not answer (%s); asking the server", exc)
            return None
        return None if value is None else value.decode()

    def put(self, thread_id: str, owner: str) -> None:
        if self.redis is None:
            self.local.put(thread_id, owner, SECONDS)
            return
        try:
            self.redis.set(PREFIX + thread_id, owner, ex=SECONDS)
        except Exception as exc:
            log.debug("thread owners: could not remember %s (%s)", thread_id, exc)

    def forget(self, thread_id: str) -> None:
        """Forget ``thread_id`` everywhere this store reaches (it was deleted or created)."""
        self.local.pop(thread_id)
        if self.redis is not None:
            try:
                self.redis.delete(PREFIX + thread_id)
            except Exception as exc:  # the entry expires within SECONDS anyway
                log.warning("thread owners: could not forget %s (%s)", thread_id, exc)
