"""``/admin/limits``: every limit of every scope, and setting or removing one at runtime."""
from __future__ import annotations

from flask import g

from agent_portal import PortalError, Route
from agent_portal.audit import note_change
from agent_portal.schemas import BOOLEAN, NULLABLE_STRING, NUMBER, STRING, array, obj
from agent_portal.types import ROLES

from .runtime import SCOPES

SOURCES = ("config", "runtime", "lifted")
ENTRY = obj("scope", "id", "limits", "source", scope={"enum": list(SCOPES)}, id=STRING,
            limits={"type": ["object", "null"], "description": "the limits in force (null: none)"},
            source={"enum": list(SOURCES), "description": "config; runtime (an admin's, over any config "
                                                         "value); lifted (an admin removed the config's)"},
            config={"type": ["object", "null"], "description": "the config's limits, where it sets some"},
            changed_by=NULLABLE_STRING, changed_at={"type": ["number", "null"]})


def entries(limiter) -> list[dict]:
    """Return every limit the config or an admin set, each with its scope, id and source."""
    rows = limiter.runtime.rows()
    out = []
    for scope in SCOPES:
        configured = limiter.settings.get(scope) or {}
        for ident in sorted(set(configured) | {i for s, i in rows if s == scope}):
            out.append(entry(limiter, scope, ident, rows))
    return out


def entry(limiter, scope: str, ident: str, rows: dict | None = None) -> dict | None:
    """Return the limits of ``scope``/``ident`` in force, where they come from, and the
    config's; None when neither the config nor an admin set any."""
    rows = limiter.runtime.rows() if rows is None else rows
    configured = (limiter.settings.get(scope) or {}).get(ident)
    runtime = rows.get((scope, ident))
    if runtime is None:
        if configured is None:
            return None
        return {"scope": scope, "id": ident, "limits": configured, "source": "config", "config": configured,
                "changed_by": None, "changed_at": None}
    return {"scope": scope, "id": ident, "limits": runtime["limits"],
            "source": "runtime" if runtime["limits"] is not None else "lifted", "config": configured,
            "changed_by": runtime["changed_by"], "changed_at": runtime["changed_at"]}


def _checked(scope: str, ident: str) -> None:
    if scope not in SCOPES:
        raise PortalError(f"Unknown scope {scope!r}; use {', '.join(SCOPES)}.", status=404, code="unknown_scope")
    if not ident or len(ident) > 200:
        raise PortalError("The id must be 1 to 200 characters.", code="invalid_request")
    if scope == "roles" and ident not in ROLES:
        raise PortalError(f"A role is one of {', '.join(ROLES)}.", code="invalid_role")


def admin_routes(limiter, limits_schema: dict) -> list[Route]:
    """Return ``GET /admin/limits`` and ``PUT``/``DELETE /admin/limits/<scope>/<id>``."""
    body = {**limits_schema, "x-error-code": "invalid_limits"}

    def list_limits():
        """Every limit, from the config and set at runtime"""
        return {"data": entries(limiter), "refresh_seconds": limiter.runtime.refresh_seconds}

    def put_limits(scope, ident):
        """Set the limits of one user, key, role, model or group (replacing any config value)"""
        _checked(scope, ident)
        limits = g.json_body
        if scope == "models" and limits.get("models") is not None:
            raise PortalError("A model's limits cannot name models.", code="invalid_limits")
        before = entry(limiter, scope, ident)
        limiter.runtime.put(scope, ident, limits, g.actor.id)
        after = entry(limiter, scope, ident)
        note_change("limits.put", f"{scope}/{ident}", before and before["limits"], limits)
        return after

    def delete_limits(scope, ident):
        """Remove the limits of one user, key, role, model or group (the config's too)"""
        _checked(scope, ident)
        before = entry(limiter, scope, ident)
        if before is None or before["source"] == "lifted":
            raise PortalError(f"No limits are set for {scope}/{ident}.", status=404, code="not_found")
        if before["config"] is not None:
            limiter.runtime.put(scope, ident, None, g.actor.id)  # lifted: the config's no longer hold
        else:
            limiter.runtime.delete(scope, ident)
        note_change("limits.delete", f"{scope}/{ident}", before["limits"], None)
        return {"scope": scope, "id": ident, "deleted": True, "config_lifted": before["config"] is not None}

    return [
        Route("/admin/limits", list_limits, access="admin",
              responses={"200": obj("data", "refresh_seconds", data=array(ENTRY), refresh_seconds=NUMBER)}),
        Route("/admin/limits/<scope>/<path:ident>", put_limits, methods=("PUT",), access="admin", schema=body,
              responses={"200": ENTRY}),
        Route("/admin/limits/<scope>/<path:ident>", delete_limits, methods=("DELETE",), access="admin",
              responses={"200": obj("scope", "id", "deleted", "config_lifted", scope=STRING, id=STRING,
                                    deleted=BOOLEAN, config_lifted=BOOLEAN)}),
    ]
