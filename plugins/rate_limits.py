"""Rate limits and budgets that mean the same on one laptop and on ten instances.

Requests per minute and tokens per minute are counted with the ``limits`` library: in-process
(one worker) by default, in Redis when ``portal.redis_url`` (or this plugin's ``storage``) is set,
so every worker and instance shares one count. Requests are checked before the upstream is called;
tokens are counted when the call's usage arrives, so streamed calls count too. Daily and monthly
budgets (USD) are computed from the ledger's records.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from flask import g, request
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from agent_portal import Actor, PortalError, Route, hookimpl

log = logging.getLogger("agent_portal.rate_limits")
NAME = "rate_limits"
LIMIT_KEYS = ("requests_per_minute", "tokens_per_minute", "daily_budget_usd", "monthly_budget_usd")

_LIMITS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests_per_minute": {"type": ["integer", "null"], "minimum": 1},
        "tokens_per_minute": {"type": ["integer", "null"], "minimum": 1},
        "daily_budget_usd": {"type": ["number", "null"], "minimum": 0},
        "monthly_budget_usd": {"type": ["number", "null"], "minimum": 0},
    },
}


@hookimpl
def portal_config_schema():
    return {NAME: {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "storage": {"type": ["string", "null"]},
            "on_storage_error": {"enum": ["open", "closed"], "default": "open"},
            "roles": {"type": "object", "properties": {"user": _LIMITS, "admin": _LIMITS},
                      "additionalProperties": False, "default": {}},
            "users": {"type": "object", "additionalProperties": _LIMITS, "default": {}},
            "keys": {"type": "object", "additionalProperties": _LIMITS, "default": {}},
            "models": {"type": "object", "additionalProperties": _LIMITS, "default": {}},
            "budget_cache_seconds": {"type": "number", "minimum": 0, "default": 5},
        },
    }}


class LimitExceeded(PortalError):
    status = 429
    type = "rate_limit_exceeded"


def _seconds_until_next_day(now: datetime) -> int:
    tomorrow = datetime(now.year, now.month, now.day, tzinfo=timezone.utc).timestamp() + 86400
    return max(1, int(tomorrow - now.timestamp()))


def _month_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, 1, tzinfo=timezone.utc)


def _next_month_start(now: datetime) -> datetime:
    return datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=timezone.utc)


class Limiter:
    """The app's limits: which apply to whom, the shared counters, and the budget figures."""

    def __init__(self, portal, settings: dict):
        self.portal = portal
        self.settings = settings
        url = settings.get("storage") or portal.settings.get("redis_url") or "memory://"
        self.storage_url = url
        self.storage = storage_from_string(url)
        self.window = FixedWindowRateLimiter(self.storage)
        self.fail_open = settings["on_storage_error"] == "open"
        self.storage_errors = 0
        self._spend_cache: dict = {}

    # --- which limits apply --------------------------------------------------------------
    def limits_for(self, actor, model: str | None = None) -> list[tuple[str, tuple, dict]]:
        """Return ``[(scope, identifiers, limits)]`` that apply to ``actor`` (and ``model``)."""
        role_limits = dict(self.settings["roles"].get(actor.role) or {})
        user_limits = {**role_limits, **(self.settings["users"].get(actor.id) or {})}
        scopes = [("user", ("user", actor.id), user_limits)]
        if actor.key_id and actor.key_id in self.settings["keys"]:
            scopes.append(("key", ("key", actor.key_id), self.settings["keys"][actor.key_id]))
        if model and model in self.settings["models"]:
            scopes.append(("model", ("user-model", actor.id, model), self.settings["models"][model]))
        return [(s, ids, {k: v for k, v in lim.items() if v is not None}) for s, ids, lim in scopes]

    # --- the counters --------------------------------------------------------------------
    def _guarded(self, default, method, *args, **kwargs):
        """Return ``method(*args)`` on the limit store, or ``default`` (fail-open) or a 503
        (fail-closed) when the store cannot answer."""
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            self.storage_errors += 1
            metrics = self.portal.extensions.get("metrics")
            if metrics is not None:
                metrics.upstream_errors.labels("limit_storage").inc()
            log.warning("rate limit storage %s failed: %s", self.storage_url.split("@")[-1], exc)
            if self.fail_open:
                return default
            raise PortalError("The rate limit store cannot be reached; calls are refused until it returns.",
                              status=503, code="limit_store_unavailable") from exc

    def admit(self, actor, model: str) -> None:
        """Raise :class:`LimitExceeded` (429, ``Retry-After``) when a limit or budget is spent;
        otherwise count the request."""
        scopes = self.limits_for(actor, model)
        for scope, ids, lim in scopes:
            if "tokens_per_minute" in lim:
                item = RateLimitItemPerMinute(lim["tokens_per_minute"])
                if not self._guarded(True, self.window.test, item, "tokens", *ids):
                    self._refuse(scope, "tokens_per_minute", item, ("tokens", *ids))
            for budget in ("daily_budget_usd", "monthly_budget_usd"):
                if budget in lim and scope != "key":
                    spent = self.spend(actor.id, budget)
                    if spent >= lim[budget]:
                        now = datetime.now(timezone.utc)
                        wait = (_seconds_until_next_day(now) if budget == "daily_budget_usd"
                                else int((_next_month_start(now) - now).total_seconds()))
                        raise LimitExceeded(f"The {scope} {budget.replace('_', ' ')} of "
                                            f"${lim[budget]:.2f} is spent (${spent:.4f}).",
                                            code=budget, headers={"Retry-After": str(wait)})
        for scope, ids, lim in scopes:
            if "requests_per_minute" in lim:
                item = RateLimitItemPerMinute(lim["requests_per_minute"])
                if not self._guarded(True, self.window.hit, item, "requests", *ids):
                    self._refuse(scope, "requests_per_minute", item, ("requests", *ids))

    def _refuse(self, scope, name, item, ids):
        stats = self._guarded(None, self.window.get_window_stats, item, *ids)
        wait = max(1, int((stats.reset_time if stats else time.time() + 60) - time.time()) + 1)
        raise LimitExceeded(f"The {scope} limit {name} ({item.amount} per minute) is reached.",
                            code=name, headers={"Retry-After": str(wait)})

    def count_tokens(self, record) -> None:
        """Count a finished call's tokens against every tokens-per-minute limit that applies."""
        tokens = record.prompt_tokens + record.completion_tokens
        if tokens <= 0:
            return
        actor = Actor(id=record.actor_id, role=record.actor_role, via="record", key_id=record.key_id)
        for _scope, ids, lim in self.limits_for(actor, record.model):
            if "tokens_per_minute" in lim:
                item = RateLimitItemPerMinute(lim["tokens_per_minute"])
                try:
                    self.window.hit(item, "tokens", *ids, cost=tokens)
                except Exception as exc:  # off the request path: log, never raise
                    self.storage_errors += 1
                    log.warning("could not count %d tokens: %s", tokens, exc)

    # --- budgets from the ledger -------------------------------------------------------------
    def spend(self, user: str, budget: str) -> float:
        """Return ``user``'s spend this UTC day or month from the ledger (cached briefly)."""
        ledger = self.portal.extensions.get("ledger")
        if ledger is None:
            return 0.0
        key = (user, budget)
        cached = self._spend_cache.get(key)
        if cached is not None and time.monotonic() - cached[1] < self.settings["budget_cache_seconds"]:
            return cached[0]
        now = datetime.now(timezone.utc)
        since = datetime(now.year, now.month, now.day, tzinfo=timezone.utc) \
            if budget == "daily_budget_usd" else _month_start(now)
        value = ledger.spend(user, since)
        self._spend_cache[key] = (value, time.monotonic())
        return value

    def status(self, actor) -> list[dict]:
        """Return each limit that applies to ``actor`` with what is left and when it resets."""
        out = []
        for scope, ids, lim in self.limits_for(actor):
            for name, value in lim.items():
                entry = {"scope": scope, "limit": name, "value": value}
                if name in ("requests_per_minute", "tokens_per_minute"):
                    kind = "requests" if name == "requests_per_minute" else "tokens"
                    item = RateLimitItemPerMinute(value)
                    stats = self._guarded(None, self.window.get_window_stats, item, kind, *ids)
                    entry["remaining"] = stats.remaining if stats else None
                    entry["resets_at"] = stats.reset_time if stats else None
                elif scope != "key":
                    spent = self.spend(actor.id, name)
                    entry["spent_usd"] = round(spent, 6)
                    entry["remaining"] = round(max(0.0, value - spent), 6)
                out.append(entry)
        return out


@hookimpl
def portal_startup(portal):
    portal.extensions[NAME] = Limiter(portal, portal.plugin_config(NAME))


@hookimpl
def portal_chat_admission(portal, actor, model):
    portal.extensions[NAME].admit(actor, model)


@hookimpl
def portal_chat_completed(portal, record):
    if record.outcome != "refused":
        portal.extensions[NAME].count_tokens(record)


@hookimpl
def portal_register_routes(portal):
    limiter = portal.extensions[NAME]

    def limits_view():
        actor = g.actor
        wanted = request.args.get("user")
        if wanted and wanted != actor.id:
            if actor.role != "admin":
                raise PortalError("You may only see your own limits.", status=403, code="forbidden")
            role = request.args.get("role", "user")
            if role not in ("user", "admin"):
                raise PortalError("role must be user or admin.", code="invalid_role")
            actor = Actor(id=wanted, role=role, via="lookup")
        return {"user": actor.id, "role": actor.role, "storage": "redis" if
                limiter.storage_url.startswith(("redis", "rediss")) else "memory",
                "limits": limiter.status(actor)}

    return [Route("/observability/limits", limits_view, access="user")]
