"""Rate limits and budgets that mean the same on one laptop and on ten instances.

Counters live in-process (one worker) by default, in Redis when ``portal.redis_url`` (or this
plugin's ``storage``) is set, so every worker and instance shares them. Requests per minute are
counted before the upstream is called; tokens per minute and daily and monthly budgets (USD)
reserve the call's estimate at admission and settle with what it really used (see ``limiter``).
A budget's counter starts from the ledger's spend for the period.

An admin changes limits at runtime with ``/admin/limits`` (``runtime``): stored in the portal's
database over the config's values, followed by every worker within ``refresh_seconds``.
"""
from __future__ import annotations

from datetime import datetime

from flask import g, request

from agent_portal import Actor, HealthCheck, PortalError, Route, hookimpl
from agent_portal.config import strict_object
from agent_portal.schemas import LIMITS, STRING, array, obj
from agent_portal.types import ROLES

from .admin import admin_routes
from .holds import Hold
from .limiter import Limiter
from .runtime import RuntimeLimits

NAME = "rate_limits"


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        "storage": {"type": ["string", "null"]},
        "on_storage_error": {"enum": ["open", "closed"], "default": "open"},
        # how far past a limit one call's own estimate may take its counter, as a fraction of it
        "overshoot": {"type": "number", "minimum": 0, "maximum": 10, "default": 0.1},
        "roles": {"type": "object", "properties": {"user": LIMITS, "admin": LIMITS},
                  "additionalProperties": False, "default": {}},
        "users": {"type": "object", "additionalProperties": LIMITS, "default": {}},
        "keys": {"type": "object", "additionalProperties": LIMITS, "default": {}},
        "models": {"type": "object", "additionalProperties": LIMITS, "default": {}},
        # a group's limits hold for each member (see portal_actor_groups: Open WebUI's groups)
        "groups": {"type": "object", "additionalProperties": LIMITS, "default": {}},
        # how often each worker reads the limits an admin set at runtime
        "refresh_seconds": {"type": "number", "minimum": 0.1, "maximum": 60, "default": 2},
        "budget_cache_seconds": {"type": "number", "minimum": 0, "default": 5},  # kept for old configs
    })}


def _ledger_spend(portal):
    def spend(user: str, since: datetime) -> float:
        value = portal.hook.portal_spend(portal=portal, user=user, since=since)
        return float(value) if value is not None else 0.0

    def key_spend(key_id: str, since: datetime) -> float:
        value = portal.hook.portal_key_spend(portal=portal, key_id=key_id, since=since)
        return float(value) if value is not None else 0.0
    return spend, key_spend


@hookimpl
def portal_startup(portal):
    settings = portal.plugin_config(NAME)
    runtime = RuntimeLimits(portal.database(), settings["refresh_seconds"])
    portal.extensions[NAME] = Limiter(portal, settings, *_ledger_spend(portal), runtime)


@hookimpl
def portal_limits_set(portal, scope, ident, limits, actor):
    limiter = portal.extensions[NAME]
    before = limiter.runtime.get(scope, ident)
    limiter.runtime.put(scope, ident, limits, actor.id)
    return {"before": before, "entry": limiter.runtime.get(scope, ident)}


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

    return admin_routes(limiter, LIMITS) + [Route(
        "/observability/limits", limits_view, access="user",
        query={"user": {"type": "string", "description": "another user's limits (admins)"},
               "role": {"enum": list(ROLES), "description": "that user's role"}},
        responses={"200": obj("user", "role", "storage", "limits", user=STRING, role=STRING,
                              storage={"enum": ["redis", "memory"]}, limits=array(obj()))})]
