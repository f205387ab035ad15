"""Assistants: every user reads those of the graphs their role may run; admins change them."""
from __future__ import annotations

import json

from flask import Response, g, request

from agent_portal import PortalError

from .client import segment
from .proxy import forward, json_body, passthrough
from .settings import NAME

READ_PARTS = ("schemas", "graph", "subgraphs")


def _hidden(assistant_id: str) -> PortalError:
    return PortalError(f"No such assistant: {assistant_id}.", status=404, code="assistant_not_found")


def _allowed(portal, assistant_id: str) -> str:
    """Return the quoted id when the caller may run the assistant's graph; 404 otherwise, as if
    it did not exist."""
    state = portal.extensions[NAME]
    quoted = segment(assistant_id, "assistant")
    graph = state.client.graph_id(assistant_id, request_id=g.request_id)
    if not state.settings.may_run(g.actor, graph):
        raise _hidden(assistant_id)
    return quoted


def _search(portal, body: dict) -> list:
    """Return the server's answer to an assistants search (a list), or raise its refusal."""
    answer = portal.extensions[NAME].client.call("POST", "/assistants/search", body, request_id=g.request_id)
    if answer.status != 200 or not isinstance(answer.json, list):
        passthrough(answer)
        raise PortalError(f"The agent server answered HTTP {answer.status} to a search.", status=502,
                          code="upstream_error", type="upstream_error")
    return answer.json


def _runnable(portal, assistants: list) -> list:
    """Return the assistants of graphs the caller's role may run."""
    settings = portal.extensions[NAME].settings
    return [a for a in assistants if isinstance(a, dict) and isinstance(a.get("graph_id"), str)
            and settings.may_run(g.actor, a["graph_id"])]


def _visible(portal, body: dict) -> list:
    return _runnable(portal, _search(portal, body))


def search(portal):
    return Response(json.dumps(_visible(portal, json_body())), status=200, mimetype="application/json")


PAGE = 1000  # the most langgraph-api answers in one search
MAX_PAGES = 100


def count(portal):
    """How many assistants the caller may see: the server's search, page by page (it answers
    at most ``PAGE`` a call), counting those of graphs the caller's role may run."""
    body = {k: v for k, v in json_body().items() if k not in ("limit", "offset")}
    seen = 0
    for page in range(MAX_PAGES):
        found = _search(portal, {**body, "limit": PAGE, "offset": page * PAGE})
        seen += len(_runnable(portal, found))
        if len(found) < PAGE:
            break
    return Response(json.dumps(seen), status=200, mimetype="application/json")


def read(portal, assistant_id: str, part: str | None):
    path = f"/assistants/{_allowed(portal, assistant_id)}" + (f"/{part}" if part else "")
    return forward(portal, "GET", path)


def versions(portal, assistant_id: str):
    return forward(portal, "POST", f"/assistants/{_allowed(portal, assistant_id)}/versions", json_body())


def _changed(portal, response):
    portal.extensions[NAME].client.forget_assistants()
    return response


def create(portal):
    return _changed(portal, forward(portal, "POST", "/assistants", json_body(required=True)))


def change(portal, assistant_id: str):
    quoted = segment(assistant_id, "assistant")
    body = json_body() if request.method == "PATCH" else None
    return _changed(portal, forward(portal, request.method, f"/assistants/{quoted}", body))


def latest(portal, assistant_id: str):
    quoted = segment(assistant_id, "assistant")
    return _changed(portal, forward(portal, "POST", f"/assistants/{quoted}/latest", json_body()))
