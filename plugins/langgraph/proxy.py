"""Handing the caller's request to the LangGraph server and its answer back."""
from __future__ import annotations

from flask import Response, g, request

from agent_portal import PortalError
from agent_portal.request_body import json_object
from agent_portal.sse import STREAM_HEADERS, relay

from .client import Answer
from .events import LangGraphEvents, RunStreamState
from .settings import NAME


def json_body(required: bool = False) -> dict:
    """Return the request's JSON object ({} for an empty body unless ``required``)."""
    return json_object(required)


def passthrough(answer: Answer) -> Response:
    """Answer with the server's own status and JSON (its ``{"detail"}`` on 4xx, as SDK clients
    expect); a server failure (5xx) is the portal's 502."""
    if answer.status >= 500:
        detail = answer.json.get("detail") if isinstance(answer.json, dict) else None
        raise PortalError(f"The agent server failed: {detail or 'HTTP %d' % answer.status}.", status=502,
                          code="upstream_error", type="upstream_error")
    return Response(answer.body, status=answer.status, mimetype="application/json")


def forward(portal, method: str, path: str, body=None) -> Response:
    """Send the caller's request on to ``path`` (its query too, for a GET) and pass the answer back."""
    client = portal.extensions[NAME].client
    params = list(request.args.items(multi=True)) if method == "GET" else None
    return passthrough(client.call(method, path, body, params=params, request_id=g.request_id))


def forward_stream(portal, path: str) -> Response:
    """Relay a stream that is not a new run (joining one under way): events as they come,
    heartbeats, an error event on failure; not metered, the run was where it started."""
    state = portal.extensions[NAME]
    response = state.client.open("GET", path, params=list(request.args.items(multi=True)),
                                 timeout=state.settings.stream_timeout, stream=True, request_id=g.request_id)
    if response.status != 200:
        return passthrough(Answer(response.status, response.data, response.headers))
    settings = state.settings
    return Response(relay(response, b"", RunStreamState(), settings.heartbeat, settings.between_events,
                          lambda _state: None, portal.live_streams, events=LangGraphEvents),
                    status=200, mimetype="text/event-stream", headers=STREAM_HEADERS,
                    direct_passthrough=True)
