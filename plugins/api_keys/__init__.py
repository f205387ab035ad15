"""Portal API keys for programs: stored as SHA-256 digests, shown once, revocable; ``/admin/keys``
and ``agent-portal keys``."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone

from flask import g

from agent_portal import Command, PortalError, Route, StartupError, hookimpl
from agent_portal.config import strict_object
from agent_portal.config import parse_duration
from agent_portal.audit import note_change
from agent_portal.hooks import implementations
from agent_portal.schemas import BOOLEAN, LIMITS, NULLABLE_STRING, STRING, array, obj
from agent_portal.tokens import bearer_token
from agent_portal.usage import parse_time
from agent_portal.types import ROLES

from .store import PREFIX, KeyStore

NAME = "api_keys"


def store_of(portal) -> KeyStore:
    """Return the app's :class:`KeyStore`."""
    return portal.extensions[NAME]


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({"cache_seconds": {"type": "number", "minimum": 0, "maximum": 300, "default": 10}})}


@hookimpl
def portal_startup(portal):
    portal.extensions[NAME] = KeyStore(portal.database(), portal.plugin_config(NAME)["cache_seconds"])


@hookimpl(trylast=True)
def portal_actor_from_request(portal, request):
    token = bearer_token(request)
    if not token or not token.startswith(PREFIX):
        return None
    return store_of(portal).actor_for(token)


# A new key's request: the core checks bodies against it (the store checks the role and the
# owner's length again, for the CLI); expires_in is a duration such as 30d, 12h, 15m or 60s,
# expires_at a time; limits are the key's own (rate_limits.keys.<id>, /admin/limits/keys/<id>).
KEY_BODY = {"type": "object", "required": ["owner"], "x-error-code": "invalid_request", "properties": {
    "owner": {"type": "string", "minLength": 1, "maxLength": 200, "x-error-code": "invalid_request"},
    "role": {"enum": list(ROLES), "x-error-code": "invalid_request"},
    "name": {"type": "string", "maxLength": 200, "x-error-code": "invalid_request"},
    "expires_in": {"type": ["string", "null"], "pattern": "^\\s*[0-9]+[smhd]\\s*$",
                   "x-error-code": "invalid_request"},
    "expires_at": {"type": ["string", "null"], "maxLength": 64, "x-error-code": "invalid_time"},
    "limits": {**LIMITS, "x-error-code": "invalid_limits"}}}
EXPIRY_BODY = {"type": "object", "required": ["expires_at"], "additionalProperties": False,
               "x-error-code": "invalid_request", "properties": {
                   "expires_at": {"type": ["string", "null"], "maxLength": 64, "x-error-code": "invalid_time"}}}
KEY_ROW = obj("id", "display", "owner", "role", "created_at", id=STRING, display=STRING, name=STRING,
              owner=STRING, role=STRING, created_at=STRING, expires_at=NULLABLE_STRING,
              last_used_at=NULLABLE_STRING, revoked_at=NULLABLE_STRING,
              spent_usd_this_month={"type": ["number", "null"],
                                    "description": "what the key's calls cost this UTC month (null: unknown)"})


def _expiry(text):
    """Return the aware time of an ``expires_at`` text (None for none); 400 when it is not one."""
    if text is None:
        return None
    when = parse_time(text, "expires_at")
    if when <= datetime.now(timezone.utc):
        raise PortalError("expires_at must be in the future.", code="invalid_time")
    return when


def _month_spend(portal, key_id: str):
    start = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    try:
        value = portal.hook.portal_key_spend(portal=portal, key_id=key_id, since=start)
    except Exception:  # the listing still answers while the ledger cannot
        return None
    return round(float(value), 6) if value is not None else None


@hookimpl
def portal_register_routes(portal):
    store = store_of(portal)

    def list_keys():
        return {"data": [{**row, "spent_usd_this_month": _month_spend(portal, row["id"])} for row in store.list()]}

    def create_key():
        body = g.json_body  # checked against KEY_BODY by the core
        owner, role, name = body["owner"], body.get("role", "user"), body.get("name", "")
        limits = body.get("limits")
        if limits is not None and not implementations(portal.hook.portal_limits_set):
            raise PortalError("A key's limits need the rate_limits plugin.", code="invalid_limits")
        if body.get("expires_in") and body.get("expires_at"):
            raise PortalError("Give expires_in or expires_at, not both.", code="invalid_request")
        try:
            seconds = parse_duration(body.get("expires_in"))
            created = store.create(owner, role, name, timedelta(seconds=seconds) if seconds else None,
                                   _expiry(body.get("expires_at")))
        except ValueError as exc:
            raise PortalError(str(exc)) from exc
        created["created_by"] = g.actor.id
        if limits is not None:
            portal.hook.portal_limits_set(portal=portal, scope="keys", ident=created["id"], limits=limits,
                                          actor=g.actor)
            created["limits"] = limits
        note_change("keys.create", f"keys/{created['id']}", None,
                    {k: v for k, v in created.items() if k != "key"})
        return created, 201

    def set_expiry(key_id):
        before = store.get(key_id)
        if before is None or not store.set_expiry(key_id, _expiry(g.json_body["expires_at"])):
            raise PortalError("No active key has that id.", status=404)
        after = store.get(key_id)
        note_change("keys.expiry", f"keys/{key_id}", {"expires_at": before["expires_at"]},
                    {"expires_at": after["expires_at"]})
        return after

    def revoke_key(key_id):
        before = store.get(key_id)
        if not store.revoke(key_id):
            raise PortalError("No active key has that id.", status=404)
        note_change("keys.revoke", f"keys/{key_id}", before, store.get(key_id))
        return {"id": key_id, "revoked": True}

    return [
        Route("/admin/keys", list_keys, access="admin", responses={"200": obj("data", data=array(KEY_ROW))}),
        Route("/admin/keys", create_key, methods=("POST",), access="admin", schema=KEY_BODY,
              responses={"201": {**KEY_ROW, "required": [*KEY_ROW["required"], "key"],
                                 "properties": {**KEY_ROW["properties"], "key": STRING, "created_by": STRING,
                                                "limits": obj()}}}),
        Route("/admin/keys/<key_id>", set_expiry, methods=("PATCH",), access="admin", schema=EXPIRY_BODY,
              responses={"200": KEY_ROW}),
        Route("/admin/keys/<key_id>", revoke_key, methods=("DELETE",), access="admin",
              responses={"200": obj("id", "revoked", id=STRING, revoked=BOOLEAN)}),
    ]


def _configure_keys(parser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create")
    create.add_argument("--owner", required=True)
    create.add_argument("--role", choices=list(ROLES), default="user")
    create.add_argument("--name")
    create.add_argument("--expires", help="lifetime such as 30d; default never")
    listing = actions.add_parser("list")
    revoke = actions.add_parser("revoke")
    revoke.add_argument("id")
    for sub in (create, listing, revoke):  # --config after the action too
        sub.add_argument("--config", default=argparse.SUPPRESS)


def _run_keys(args, load_portal) -> int:
    portal = load_portal()
    if NAME not in portal.sources:
        raise StartupError(f"plugin {NAME!r} is not enabled in this config")
    store = store_of(portal)
    if args.action == "create":
        expires = parse_duration(args.expires)
        created = store.create(args.owner, args.role, args.name or "",
                               timedelta(seconds=expires) if expires else None)
        print(json.dumps(created, indent=2))
        print("Keep the key now: it is not shown again.", file=sys.stderr)
    elif args.action == "list":
        print(json.dumps(store.list(), indent=2))
    else:
        if not store.revoke(args.id):
            print(f"no active key with id {args.id}", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
    return 0


@hookimpl
def portal_commands():
    return [Command("keys", "portal API keys", _configure_keys, _run_keys)]
