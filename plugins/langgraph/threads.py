"""Threads with owners: the portal stamps the creator in a thread's metadata and checks it on
every thread route; searches see only the caller's threads. Admins see every thread."""
from __future__ import annotations

from flask import g, request

from agent_portal import PortalError

from .client import segment
from .proxy import forward, json_body, passthrough
from .runs import OWNER
from .settings import NAME


def _not_found(thread_id: str) -> PortalError:
    return PortalError(f"No such thread: {thread_id}.", status=404, code="thread_not_found")


def thread_owner(portal, thread_id: str) -> str | None:
    """Return the owner of ``thread_id`` (remembered for a few seconds, see ``owners``), or
    raise 404 when the server has no such thread."""
    state = portal.extensions[NAME]
    owner = state.thread_owners.get(thread_id)
    if owner is not None:
        return owner
    answer = state.client.call("GET", f"/threads/{segment(thread_id, 'thread')}", request_id=g.request_id)
    if answer.status == 404:
        raise _not_found(thread_id)
    if answer.status != 200 or not isinstance(answer.json, dict):
        passthrough(answer)
        raise PortalError("The agent server's answer was not a thread.", status=502, code="upstream_malformed")
    owner = (answer.json.get("metadata") or {}).get(OWNER) or ""
    state.thread_owners.put(thread_id, owner)
    return owner


def check_thread(portal, actor, thread_id: str) -> str:
    """Return the quoted ``thread_id`` when ``actor`` may use it; 404 for anyone else's."""
    quoted = segment(thread_id, "thread")
    owner = thread_owner(portal, thread_id)
    if actor.role != "admin" and owner != actor.id:
        raise _not_found(thread_id)
    return quoted


def owner_filter(actor, body: dict) -> dict:
    """Return a search body that finds only ``actor``'s threads, whatever filter it carried."""
    if actor.role == "admin":
        return body
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    return {**body, "metadata": {**metadata, OWNER: actor.id}}


def create_thread(portal):
    actor, body = g.actor, json_body()
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    client = portal.extensions[NAME].client
    answer = client.call("POST", "/threads", {**body, "metadata": {**metadata, OWNER: actor.id}},
                         request_id=g.request_id)
    if answer.status == 200 and isinstance(answer.json, dict):
        owner = (answer.json.get("metadata") or {}).get(OWNER)
        if owner != actor.id and actor.role != "admin":  # if_exists: do_nothing met another's thread
            raise PortalError("A thread with this id already exists.", status=409, code="thread_exists")
    return passthrough(answer)


def search_threads(portal):
    return forward(portal, "POST", "/threads/search", owner_filter(g.actor, json_body()))


def count_threads(portal):
    return forward(portal, "POST", "/threads/count", owner_filter(g.actor, json_body()))


def one_thread(portal, thread_id):
    quoted = check_thread(portal, g.actor, thread_id)
    if request.method == "PATCH":
        body = json_body()
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        # the owner stays who created the thread, whoever patches it
        body = {**body, "metadata": {**metadata, OWNER: thread_owner(portal, thread_id)}}
        return forward(portal, "PATCH", f"/threads/{quoted}", body)
    if request.method == "DELETE":
        response = forward(portal, "DELETE", f"/threads/{quoted}")
        portal.extensions[NAME].thread_owners.forget(thread_id)  # its id may be used again, by anyone
        return response
    return forward(portal, "GET", f"/threads/{quoted}")


def thread_part(portal, thread_id, part: str, method: str, checkpoint_id: str | None = None):
    """Forward one of a thread's own routes (state, history, copy) after the owner check."""
    quoted = check_thread(portal, g.actor, thread_id)
    path = f"/threads/{quoted}/{part}"
    if checkpoint_id is not None:
        path += "/" + segment(checkpoint_id, "checkpoint")
    body = json_body() if method in ("POST", "PATCH") else None
    return forward(portal, method, path, body)


def prepare_thread(portal, actor, thread_id: str, run_body: dict) -> str:
    """Return the quoted ``thread_id`` for a run on it: the caller's own thread, or, when it
    does not exist and the run says ``if_not_exists: create``, one the portal creates for the
    caller first (so a thread is never made without its owner)."""
    try:
        return check_thread(portal, actor, thread_id)
    except PortalError as missing:
        if missing.code != "thread_not_found" or run_body.get("if_not_exists") != "create":
            raise
    client = portal.extensions[NAME].client
    answer = client.call("POST", "/threads", {"thread_id": thread_id, "metadata": {OWNER: actor.id},
                                              "if_exists": "raise"}, request_id=g.request_id)
    if answer.status not in (200, 409):  # 409: created meanwhile; the owner check decides
        passthrough(answer)
    portal.extensions[NAME].thread_owners.forget(thread_id)
    return check_thread(portal, actor, thread_id)
