"""Rate limits and budgets that mean the same on one laptop and on ten instances.

Counters live in-process (one worker) by default, in Redis when ``portal.redis_url`` (or this
plugin's ``storage``) is set, so every worker and instance shares them. Requests per minute are
counted before the upstream is called; tokens per minute and daily and monthly budgets (USD)
reserve the call's estimate at admission and settle with what it really used (see ``limiter``).
A budget's counter starts from the ledger's spend for the period.
"""
from __future__ import annotations

from datetime import datetime

from flask import g, request

from agent_portal import Actor, HealthCheck, PortalError, Route, hookimpl
from agent_portal.config import strict_object
from agent_portal.schemas import STRING, array, obj
from agent_portal.types import ROLES

from .holds import Hold
from .limiter import Limiter

NAME = "rate_limits"

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
    return {NAME: strict_object({
        "storage": {"type": ["string", "null"]},
        "on_storage_error": {"enum": ["open", "closed"], "default": "open"},
        # how far past a limit one call's own estimate may take its counter, as a fraction of it
        "overshoot": {"type": "number", "minimum": 0, "maximum": 10, "default": 0.1},
        "roles": {"type": "object", "properties": {"user": _LIMITS, "admin": _LIMITS},
                  "additionalProperties": False, "default": {}},
        "users": {"type": "object", "additionalProperties": _LIMITS, "default": {}},
        "keys": {"type": "object", "additionalProperties": _LIMITS, "default": {}},
        "models": {"type": "object", "additionalProperties": _LIMITS, "default": {}},
        "budget_cache_seconds": {"type": "number", "minimum": 0, "default": 5},  # kept for old configs
    })}


def _ledger_spend(portal):
    def spend(user: str, since: datetime) -> float:
        value = portal.hook.portal_spend(portal=portal, user=user, since=since)
        return float(value) if value is not None else 0.0
    return spend


@hookimpl
def portal_startup(portal):
    portal.extensions[NAME] = Limiter(portal, portal.plugin_config(NAME), _ledger_spend(portal))


@hookimpl
def portal_chat_admission(portal, actor, model, target, estimate):
    holds = portal.extensions[NAME].admit(actor, target.names if target else (model,), estimate)
    if estimate is not None:
        estimate.holds.extend(holds)


@hookimpl
def portal_health_checks(portal):
    """The limit store: up, or degraded since when and why, with what its mode lets through."""
    limiter = portal.extensions[NAME]
    return [HealthCheck("limits", lambda portal: limiter.health(), timeout=3.0)]


@hookimpl
def portal_chat_readmission(portal, estimate, prompt_tokens, cost):
    holds = [h for h in estimate.holds if isinstance(h, Hold)]
    if holds:
        portal.extensions[NAME].extend(holds, prompt_tokens, cost)


@hookimpl
def portal_chat_completed(portal, record):
    estimate = record.reservation
    holds = [h for h in (estimate.holds if estimate is not None else ()) if isinstance(h, Hold)]
    if holds:
        portal.extensions[NAME].settle(holds, record)


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
            if role not in ROLES:
                raise PortalError("role must be user or admin.", code="invalid_role")
            actor = Actor(id=wanted, role=role, via="lookup")
        return {"user": actor.id, "role": actor.role, "storage": limiter.storage_kind,
                "limits": limiter.status(actor)}

    return [Route("/observability/limits", limits_view, access="user",
                  query={"user": {"type": "string", "description": "another user's limits (admins)"},
                         "role": {"enum": list(ROLES), "description": "that user's role"}},
                  responses={"200": obj(
        "user", "role", "storage", "limits", user=STRING, role=STRING, storage={"enum": ["redis", "memory"]},
        limits=array(obj()))})]
