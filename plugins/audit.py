"""The audit trail: every admin change (``portal_admin_change``) as a row of the portal's
database, read at ``GET /admin/audit``. Nothing but the core's announcement of an admin route's
change writes a row: there is no route to write one."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import sqlalchemy as sa
from flask import request

from agent_portal import PortalError, Route, hookimpl
from agent_portal.config import strict_object
from agent_portal.database import create_tables
from agent_portal.schemas import INTEGER, STRING, array, obj

NAME = "audit"

metadata = sa.MetaData()
trail = sa.Table(
    "portal_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False, index=True),
    sa.Column("action", sa.String(200), nullable=False),
    sa.Column("target", sa.String(500), nullable=False),
    sa.Column("before", sa.Text),  # JSON
    sa.Column("after", sa.Text),  # JSON
    sa.Column("request_id", sa.String(128), nullable=False, default=""),
)
ANY_JSON = {"description": "the state as JSON (null where there was none)"}
ROW = obj("id", "at", "actor", "action", "target", "before", "after", id=INTEGER, at=STRING, actor=STRING,
          action=STRING, target=STRING, before=ANY_JSON, after=ANY_JSON, request_id=STRING)


class AuditTrail:
    """The rows of admin changes, newest first."""

    def __init__(self, engine):
        self.engine = engine
        create_tables(engine, metadata)

    def add(self, change) -> None:
        """Store one :class:`agent_portal.AdminChange`."""
        with self.engine.begin() as conn:
            conn.execute(trail.insert().values(
                at=datetime.fromtimestamp(change.at, timezone.utc), actor=change.actor[:200],
                action=change.action[:200], target=change.target[:500], request_id=change.request_id[:128],
                before=json.dumps(change.before, default=str), after=json.dumps(change.after, default=str)))

    def rows(self, limit: int, before_id: int | None = None, actor: str | None = None,
             action: str | None = None) -> list[dict]:
        """Return up to ``limit`` rows, newest first, older than ``before_id`` when given."""
        stmt = sa.select(trail).order_by(trail.c.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(trail.c.id < before_id)
        if actor:
            stmt = stmt.where(trail.c.actor == actor)
        if action:
            stmt = stmt.where(trail.c.action.startswith(action, autoescape=True))
        with self.engine.connect() as conn:
            found = conn.execute(stmt).mappings().all()
        return [{**row, "at": row["at"].replace(tzinfo=row["at"].tzinfo or timezone.utc).isoformat(),
                 "before": json.loads(row["before"]) if row["before"] else None,
                 "after": json.loads(row["after"]) if row["after"] else None} for row in found]


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({})}


@hookimpl
def portal_startup(portal):
    portal.extensions[NAME] = AuditTrail(portal.database())


@hookimpl
def portal_admin_change(portal, change):
    portal.extensions[NAME].add(change)


def _int_arg(name: str, default, low: int, high: int):
    text = request.args.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise PortalError(f"'{name}' must be a whole number from {low} to {high}.", code="invalid_request")
    return value


@hookimpl
def portal_register_routes(portal):
    audit = portal.extensions[NAME]

    def audit_view():
        """Admin changes, newest first"""
        rows = audit.rows(_int_arg("limit", 100, 1, 1000), _int_arg("before", None, 1, 2**62),
                          request.args.get("actor") or None, request.args.get("action") or None)
        return {"data": rows, "next_before": rows[-1]["id"] if rows else None}

    return [Route("/admin/audit", audit_view, access="admin", query={
        "limit": {"type": "integer", "description": "rows to return (1 to 1000, default 100)"},
        "before": {"type": "integer", "description": "only rows older than this id (the last page's next_before)"},
        "actor": {"type": "string", "description": "only this admin's changes"},
        "action": {"type": "string", "description": "only actions starting with this, such as limits."}},
        responses={"200": obj("data", "next_before", data=array(ROW),
                              next_before={"type": ["integer", "null"]})})]
