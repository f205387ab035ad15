"""``/documents/collections``: making, listing, sharing and deleting collections."""
from __future__ import annotations

import json

from flask import Response, g, request

from agent_portal import PortalError
from agent_portal.request_body import json_object
from agent_portal.types import ROLES

from .settings import NAME


def _json(data, status=200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def _state(portal):
    return portal.extensions[NAME]


def readable_collection(portal, actor, collection_id: str) -> dict:
    """Return the collection when ``actor`` may read it; 404 otherwise (as if it did not exist)."""
    collection = _state(portal).catalog.collection(collection_id) if isinstance(collection_id, str) else None
    if collection is None or collection["id"] not in {c["id"] for c in _state(portal).catalog.readable(actor)}:
        raise PortalError(f"No such collection: {collection_id}.", status=404, code="collection_not_found")
    return collection


def owned_collection(portal, actor, collection_id: str) -> dict:
    """Return the collection when ``actor`` owns it or is an admin (404 to those who cannot read
    it, 403 to readers who may not change it)."""
    collection = readable_collection(portal, actor, collection_id)
    if collection["owner"] != actor.id and actor.role != "admin":
        raise PortalError("Only the collection's owner or an admin may change it.", status=403,
                          code="collection_read_only")
    return collection


def collections_view(portal):
    state, actor = _state(portal), g.actor
    if request.method == "GET":
        return _json({"collections": state.catalog.readable(actor)})
    body = json_object()
    name, description = body.get("name"), body.get("description", "")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or ":" in name or "/" in name:
        raise PortalError("`name` must be 1 to 200 characters, without : or /.", status=400, code="invalid_request")
    if not isinstance(description, str) or len(description) > 10_000:
        raise PortalError("`description` must be a string of at most 10000 characters.", status=400,
                          code="invalid_request")
    created = state.catalog.create_collection(actor.id, name.strip(), description)
    if created is None:
        raise PortalError(f"You already have a collection named {name.strip()!r}.", status=409,
                          code="collection_exists")
    return _json(created, 201)


def collection_view(portal, collection_id):
    state, actor = _state(portal), g.actor
    if request.method == "GET":
        collection = readable_collection(portal, actor, collection_id)
        return _json({**collection, "files": state.catalog.files_of(collection_id)})
    owned_collection(portal, actor, collection_id)
    for file_id in state.catalog.delete_collection(collection_id):
        state.store().delete_file(file_id)
    return Response(status=204)


def share_view(portal, collection_id):
    """``PUT /documents/collections/{id}/sharing`` ``{roles: [...], users: [...]}`` (replaces)."""
    state, actor = _state(portal), g.actor
    owned_collection(portal, actor, collection_id)
    body = json_object()
    roles, users = body.get("roles", []), body.get("users", [])
    if not isinstance(roles, list) or not set(roles) <= set(ROLES):
        raise PortalError(f"`roles` must be a list of {', '.join(ROLES)}.", status=400, code="invalid_request")
    if not isinstance(users, list) or not all(isinstance(u, str) and 0 < len(u) <= 200 for u in users) \
            or len(users) > 1000:
        raise PortalError("`users` must be a list of user ids.", status=400, code="invalid_request")
    return _json(state.catalog.share(collection_id, roles, users))
