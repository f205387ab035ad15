"""Portal API keys for programs: stored as SHA-256 digests, shown once, revocable; ``/admin/keys``
and ``agent-portal keys``."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

from flask import g

from agent_portal import Command, PortalError, Route, StartupError, hookimpl
from agent_portal.config import strict_object
from agent_portal.config import parse_duration
from agent_portal.schemas import BOOLEAN, NULLABLE_STRING, STRING, array, obj
from agent_portal.tokens import bearer_token
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
# owner's length again, for the CLI); expires_in is a duration such as 30d, 12h, 15m or 60s.
KEY_BODY = {"type": "object", "required": ["owner"], "x-error-code": "invalid_request", "properties": {
    "owner": {"type": "string", "minLength": 1, "maxLength": 200, "x-error-code": "invalid_request"},
    "role": {"enum": list(ROLES), "x-error-code": "invalid_request"},
    "name": {"type": "string", "maxLength": 200, "x-error-code": "invalid_request"},
    "expires_in": {"type": ["string", "null"], "pattern": "^\\s*[0-9]+[smhd]\\s*$",
                   "x-error-code": "invalid_request"}}}
KEY_ROW = obj("id", "display", "owner", "role", "created_at", id=STRING, display=STRING, name=STRING,
              owner=STRING, role=STRING, created_at=STRING, expires_at=NULLABLE_STRING,
              last_used_at=NULLABLE_STRING, revoked_at=NULLABLE_STRING)


@hookimpl
def portal_register_routes(portal):
    store = store_of(portal)

    def list_keys():
        return {"data": store.list()}

    def create_key():
        body = g.json_body  # checked against KEY_BODY by the core
        owner, role, name = body["owner"], body.get("role", "user"), body.get("name", "")
        try:
            seconds = parse_duration(body.get("expires_in"))
            created = store.create(owner, role, name, timedelta(seconds=seconds) if seconds else None)
        except ValueError as exc:
            raise PortalError(str(exc)) from exc
        created["created_by"] = g.actor.id
        return created, 201

    def revoke_key(key_id):
        if not store.revoke(key_id):
            raise PortalError("No active key has that id.", status=404)
        return {"id": key_id, "revoked": True}

    return [
        Route("/admin/keys", list_keys, access="admin", responses={"200": obj("data", data=array(KEY_ROW))}),
        Route("/admin/keys", create_key, methods=("POST",), access="admin", schema=KEY_BODY,
              responses={"201": {**KEY_ROW, "required": [*KEY_ROW["required"], "key"],
                                 "properties": {**KEY_ROW["properties"], "key": STRING, "created_by": STRING}}}),
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
