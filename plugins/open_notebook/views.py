"""Notebooks, their sources and notes, and search, for each portal user their own.

Every route checks the caller owns the notebook (admins: any notebook) before Open Notebook
hears of the request; others get 404, as if it did not exist. Lists show only the caller's
objects. Open Notebook's search runs across everything it holds, so its results are filtered to
the sources and notes of the caller's notebooks before anyone sees them.
"""
from __future__ import annotations

import json
import re

from flask import Response, g, request

from agent_portal import PortalError
from agent_portal.request_body import json_object

from .settings import NAME

RECORD_ID = re.compile(r"^[A-Za-z_]{1,32}:[A-Za-z0-9_]{1,64}$")
SOURCE_TYPES = ("link", "text", "upload")
SEARCH_LIMIT = 1000  # Open Notebook's own ceiling for one search


def _state(portal):
    return portal.extensions[NAME]


def _json(data, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def _not_found(kind: str, object_id: str) -> PortalError:
    return PortalError(f"No such {kind}: {object_id}.", status=404, code=f"{kind}_not_found")


def _body(required=True) -> dict:
    return json_object(required)


def _text_field(body: dict, key: str, required: bool, limit: int = 100_000) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise PortalError(f"`{key}` must be {'a non-empty' if required else 'a'} string of at most {limit} "
                          "characters.", status=400, code="invalid_request")
    return value


def owned_notebook(portal, notebook_id: str) -> str:
    """Return ``notebook_id`` when the caller may use it (404 otherwise)."""
    if not RECORD_ID.match(notebook_id or ""):
        raise _not_found("notebook", notebook_id)
    entry = _state(portal).owners.get("notebook", notebook_id)
    if g.actor.role == "admin" and entry is None:
        _state(portal).client.call("GET", f"/api/notebooks/{notebook_id}", request_id=g.request_id)  # 404s if absent
        return notebook_id
    if entry is None or (entry["owner"] != g.actor.id and g.actor.role != "admin"):
        raise _not_found("notebook", notebook_id)
    return notebook_id


def owned_child(portal, kind: str, notebook_id: str, object_id: str) -> str:
    """Return ``object_id`` (a source or note) when it belongs to ``notebook_id`` (404 otherwise)."""
    if not RECORD_ID.match(object_id or ""):
        raise _not_found(kind, object_id)
    entry = _state(portal).owners.get(kind, object_id)
    if entry is None or entry["notebook_id"] != notebook_id:
        raise _not_found(kind, object_id)
    return object_id


# --- notebooks ---------------------------------------------------------------------------------------
def notebooks(portal):
    state = _state(portal)
    if request.method == "POST":
        body = _body()
        created = state.client.call("POST", "/api/notebooks", {
            "name": _text_field(body, "name", True, 500),
            "description": _text_field(body, "description", False, 10_000) or ""}, request_id=g.request_id)
        state.owners.add("notebook", created["id"], g.actor.id, created["id"])
        return _json(created)
    listed = state.client.call("GET", "/api/notebooks", request_id=g.request_id)
    if g.actor.role != "admin":
        mine = state.owners.ids("notebook", owner=g.actor.id)
        listed = [n for n in listed if isinstance(n, dict) and n.get("id") in mine]
    return _json(listed)


def notebook(portal, notebook_id):
    state = _state(portal)
    owned_notebook(portal, notebook_id)
    path = f"/api/notebooks/{notebook_id}"
    if request.method == "PUT":
        body = _body()
        change = {"name": _text_field(body, "name", False, 500),
                  "description": _text_field(body, "description", False, 10_000)}
        if "archived" in body:
            if not isinstance(body["archived"], bool):
                raise PortalError("`archived` must be true or false.", status=400, code="invalid_request")
            change["archived"] = body["archived"]
        return _json(state.client.call("PUT", path, {k: v for k, v in change.items() if v is not None},
                                       request_id=g.request_id))
    if request.method == "DELETE":
        answer = state.client.call("DELETE", path, params={"delete_exclusive_sources": "true"},
                                   request_id=g.request_id)
        state.owners.remove_notebook(notebook_id)
        return _json(answer)
    return _json(state.client.call("GET", path, request_id=g.request_id))


# --- sources ---------------------------------------------------------------------------------------------
def sources(portal, notebook_id):
    state = _state(portal)
    owned_notebook(portal, notebook_id)
    if request.method == "GET":
        listed = state.client.call("GET", "/api/sources", params={"notebook_id": notebook_id},
                                   request_id=g.request_id)
        return _json(listed)
    fields = _source_fields(portal, notebook_id)
    created = state.client.call("POST", "/api/sources", fields=fields, request_id=g.request_id)
    state.owners.add("source", created["id"], g.actor.id, notebook_id)
    return _json(created)


def _source_fields(portal, notebook_id: str) -> dict:
    """Return the multipart fields of a new source for ``notebook_id`` from the caller's JSON
    (``{type: link|text, url|content, title?}``) or multipart form (``type``, ``file`` or
    ``url``/``content``, ``title``)."""
    if request.mimetype == "multipart/form-data":
        form, upload = request.form, request.files.get("file")
        kind, title = form.get("type", "upload" if upload else None), form.get("title")
        values = {"url": form.get("url"), "content": form.get("content")}
    else:
        body = _body()
        kind, title, upload = body.get("type"), body.get("title"), None
        values = {"url": body.get("url"), "content": body.get("content")}
    if kind not in SOURCE_TYPES:
        raise PortalError("`type` must be link, text or upload.", status=400, code="invalid_request")
    fields = {"type": kind, "notebooks": json.dumps([notebook_id]), "embed": "false", "async_processing": "false"}
    if title is not None:
        fields["title"] = str(title)[:500]
    if kind == "link":
        url = values["url"]
        if not isinstance(url, str) or not re.match(r"^https?://[^\s]+$", url) or len(url) > 2000:
            raise PortalError("`url` must be an http or https URL.", status=400, code="invalid_request")
        fields["url"] = portal.outbound.check(url)  # Open Notebook fetches it from inside the network
    elif kind == "text":
        content = values["content"]
        if not isinstance(content, str) or not content.strip():
            raise PortalError("`content` must be non-empty text.", status=400, code="invalid_request")
        fields["content"] = content
    else:
        if upload is None or not upload.filename:
            raise PortalError("An upload needs a `file` part.", status=400, code="invalid_request")
        fields["file"] = (upload.filename.replace("/", "_")[:200], upload.read(), upload.mimetype or
                          "application/octet-stream")
    return fields


def source(portal, notebook_id, source_id, part=None):
    state = _state(portal)
    owned_notebook(portal, notebook_id)
    owned_child(portal, "source", notebook_id, source_id)
    path = f"/api/sources/{source_id}" + (f"/{part}" if part else "")
    if request.method == "DELETE":
        answer = state.client.call("DELETE", path, request_id=g.request_id)
        state.owners.remove(source_id)
        return _json(answer)
    return _json(state.client.call("GET", path, request_id=g.request_id))


# --- notes ------------------------------------------------------------------------------------------
def notes(portal, notebook_id):
    state = _state(portal)
    owned_notebook(portal, notebook_id)
    if request.method == "GET":
        return _json(state.client.call("GET", "/api/notes", params={"notebook_id": notebook_id},
                                       request_id=g.request_id))
    body = _body()
    note_type = body.get("note_type", "human")
    if note_type not in ("human", "ai"):
        raise PortalError("`note_type` must be human or ai.", status=400, code="invalid_request")
    created = state.client.call("POST", "/api/notes", {
        "title": _text_field(body, "title", False, 500), "content": _text_field(body, "content", True),
        "note_type": note_type, "notebook_id": notebook_id}, request_id=g.request_id)
    state.owners.add("note", created["id"], g.actor.id, notebook_id)
    return _json(created)


def note(portal, notebook_id, note_id):
    state = _state(portal)
    owned_notebook(portal, notebook_id)
    owned_child(portal, "note", notebook_id, note_id)
    path = f"/api/notes/{note_id}"
    if request.method == "PUT":
        body = _body()
        change = {"title": _text_field(body, "title", False, 500), "content": _text_field(body, "content", False)}
        return _json(state.client.call("PUT", path, {k: v for k, v in change.items() if v is not None},
                                       request_id=g.request_id))
    if request.method == "DELETE":
        answer = state.client.call("DELETE", path, request_id=g.request_id)
        state.owners.remove(note_id)
        return _json(answer)
    return _json(state.client.call("GET", path, request_id=g.request_id))


# --- search ------------------------------------------------------------------------------------------
def search(portal, notebook_id=None):
    """Search the caller's notebooks (one, or all of theirs). Open Notebook searches everything,
    so the portal asks for its most results and keeps those whose source or note is the caller's."""
    state = _state(portal)
    if notebook_id is not None:
        owned_notebook(portal, notebook_id)
    body = _body()
    limit = body.get("limit", 20)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= SEARCH_LIMIT:
        raise PortalError(f"`limit` must be an integer from 1 to {SEARCH_LIMIT}.", status=400, code="invalid_request")
    kind = body.get("type", "text")
    if kind not in ("text", "vector"):
        raise PortalError("`type` must be text or vector.", status=400, code="invalid_request")
    query = {"query": _text_field(body, "query", True, 2000), "type": kind, "limit": SEARCH_LIMIT,
             "search_sources": bool(body.get("search_sources", True)),
             "search_notes": bool(body.get("search_notes", True))}
    if isinstance(body.get("minimum_score"), (int, float)) and not isinstance(body.get("minimum_score"), bool):
        query["minimum_score"] = min(1.0, max(0.0, float(body["minimum_score"])))
    answer = state.client.call("POST", "/api/search", query, request_id=g.request_id)
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise PortalError("Open Notebook's search answered without results.", status=502,
                          code="upstream_malformed", type="upstream_error")
    if g.actor.role == "admin" and notebook_id is None:
        allowed = None  # an admin searching everything sees everything
    else:
        owner = None if g.actor.role == "admin" else g.actor.id
        allowed = state.owners.ids("source", owner, notebook_id) | state.owners.ids("note", owner, notebook_id)
    kept = [r for r in results if isinstance(r, dict) and (allowed is None or r.get("parent_id") in allowed)][:limit]
    return _json({"results": kept, "total_count": len(kept), "search_type": answer.get("search_type", kind)})
