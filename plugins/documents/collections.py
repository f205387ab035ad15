"""``/documents/collections``: making, listing, sharing and deleting collections."""
from __future__ import annotations

import json

from flask import Response, g, request

from agent_portal import PortalError
from agent_portal.audit import note_change

from .settings import state_of


def _json(data, status=200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")



def readable_collection(portal, actor, collection_id: str) -> dict:
    """Return the collection when ``actor`` may read it; 404 otherwise (as if it did not exist)."""
    collection = state_of(portal).catalog.collection(collection_id) if isinstance(collection_id, str) else None
    if collection is None or collection["id"] not in {c["id"] for c in state_of(portal).catalog.readable(actor)}:
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
    state, actor = state_of(portal), g.actor
    if request.method == "GET":
        return _json({"collections": state.catalog.readable(actor)})
    body = g.json_body  # checked against schemas.NEW_COLLECTION by the core
    name, description = body["name"], body.get("description", "")
    created = state.catalog.create_collection(actor.id, name.strip(), description)
    if created is None:
        raise PortalError(f"You already have a collection named {name.strip()!r}.", status=409,
                          code="collection_exists")
    return _json(created, 201)


def collection_view(portal, collection_id):
    state, actor = state_of(portal), g.actor
    if request.method == "GET":
        collection = readable_collection(portal, actor, collection_id)
        return _json({**collection, "files": state.catalog.files_of(collection_id)})
    collection = owned_collection(portal, actor, collection_id)
    note_change("documents.delete_collection", f"collections/{collection_id}", collection, None)
    removed = state.catalog.delete_collection(collection_id)
    if removed:
        state.queue.purge(removed)
    return Response(status=204)


def share_view(portal, collection_id):
    """``PUT /documents/collections/{id}/sharing`` ``{roles, users, groups}`` (replaces)."""
    state, actor = state_of(portal), g.actor
    before = owned_collection(portal, actor, collection_id)["shared_with"]
    body = g.json_body  # checked against schemas.SHARING by the core
    shared = state.catalog.share(collection_id, body.get("roles", []), body.get("users", []), body.get("groups", []))
    note_change("documents.share", f"collections/{collection_id}", before, shared["shared_with"])
    return _json(shared)
