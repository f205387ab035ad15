"""MCP's streamable HTTP transport on the portal's side: ``POST /mcp`` and ``/mcp/<server>``
(one JSON-RPC message each) and ``DELETE`` (ends the session). ``GET`` is 405, as the transport
allows a server that sends nothing unasked (no list changes, no requests of its own). ``/mcp`` serves every server the caller may use, its tools named
``<server>__<tool>``; ``/mcp/<server>`` serves one server under the tools' own names."""
from __future__ import annotations

import json
import logging

from flask import Response, g, request

from agent_portal.schemas import INTEGER, SSE_EVENT, STRING, media, obj

from .calls import call_tool, may_call
from .jsonrpc import (INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, RPCError, read_message,
                      result)
from .settings import NAME, SEPARATOR

RPC_ANSWER = obj("jsonrpc", "id", jsonrpc=STRING, id={"type": ["string", "integer", "null"]}, result={"type": "object"},
                 error=obj("code", "message", code=INTEGER, message=STRING, data={"type": "object"}))
# what /mcp answers: JSON-RPC as JSON (a tools/call as SSE when the client takes it), 202 for a
# notification, 204 for an ended session; the transport's refusals carry a JSON-RPC error too
MCP_ANSWERS = {"200": media(**{"application/json": RPC_ANSWER, "text/event-stream": SSE_EVENT}), "202": None,
               "204": None, "400": RPC_ANSWER, "404": RPC_ANSWER}

log = logging.getLogger("agent_portal.mcp")
# the revisions reached by the initialize handshake that this gateway speaks
PROTOCOLS = ("2025-11-25", "2025-06-18", "2025-03-26")
TOOL_LIST_CACHE_SECONDS = 10.0
TOOL_LIST_MAX_PAGES = 20


def _json(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers or {})


def _refused(status: int, error: RPCError, request_id=None) -> Response:
    return _json(error.answer(request_id), status)


def mcp_view(portal, server: str | None = None):
    """Answer one JSON-RPC message sent to ``/mcp`` (every server) or ``/mcp/<server>``, or end
    the caller's session (DELETE)."""
    if request.method == "DELETE":
        return _end_session(portal, server)
    state = portal.extensions[NAME]
    scope = _scope(state, server)
    if isinstance(scope, Response):
        return scope
    try:
        message = read_message(request.get_data(cache=False))
    except RPCError as error:
        return _refused(400, error)
    if "method" not in message or "id" not in message:  # a notification or a response: nothing to answer
        return Response(status=202)
    request_id, method, params = message["id"], message["method"], message.get("params") or {}
    if method == "initialize":
        return _initialize(state, scope, request_id, params)
    protocol = _session_protocol(state, scope)
    if isinstance(protocol, Response):
        return protocol
    try:
        if method == "ping":
            return _json(result(request_id, {}))
        if method == "tools/list":
            return _json(result(request_id, {"tools": list_tools(state, g.actor, scope)}))
        if method == "tools/call":
            server_name, tool = _tool_of(state, scope, params)
            return call_tool(portal, state, g.actor, server_name, tool, params, request_id,
                             stream="text/event-stream" in (request.headers.get("Accept") or ""))
        raise RPCError(METHOD_NOT_FOUND, f"The portal's MCP gateway has no method `{method}` (it serves tools).")
    except RPCError as error:
        return _json(error.answer(request_id))


def _end_session(portal, server: str | None):
    state = portal.extensions[NAME]
    scope = _scope(state, server)
    if isinstance(scope, Response):
        return scope
    protocol = _session_protocol(state, scope)
    if isinstance(protocol, Response):
        return protocol
    state.sessions.end(request.headers["Mcp-Session-Id"])
    return Response(status=204)


def _scope(state, server: str | None):
    """Return the scope ("" for every server, else the server's name), or the 404 answer for a
    server that is not there for this caller."""
    if server is None:
        return ""
    settings = state.settings.servers.get(server)
    if settings is None or not settings.admits(g.actor):
        return _refused(404, RPCError(INVALID_REQUEST, f"There is no MCP server `{server}` for you here."))
    return server


def _initialize(state, scope: str, request_id, params: dict) -> Response:
    asked = params.get("protocolVersion")
    protocol = asked if asked in PROTOCOLS else PROTOCOLS[0]
    session_id = state.sessions.create(g.actor.id, scope, protocol)
    servers = [s.name for s in state.settings.usable_by(g.actor)] if scope == "" else [scope]
    answer = {"protocolVersion": protocol, "capabilities": {"tools": {"listChanged": False}},
              "serverInfo": {"name": "agent-portal" + (f"/{scope}" if scope else ""), "version": "1"},
              "instructions": "Tools of " + ", ".join(servers) + (f" (named <server>{SEPARATOR}<tool>)" if not scope else "")
              + ", called on behalf of the signed-in user, metered and limited by the portal."}
    return _json(result(request_id, answer), headers={"Mcp-Session-Id": session_id})


def _session_protocol(state, scope: str):
    """Return the protocol of the request's session, or the transport's refusal: 400 without a
    session or with a version this gateway does not speak, 404 for a session not (or no
    longer) the caller's here, after which a client initializes again."""
    session_id = request.headers.get("Mcp-Session-Id")
    if not session_id:
        return _refused(400, RPCError(INVALID_REQUEST, "Send Mcp-Session-Id (initialize first)."))
    version = request.headers.get("MCP-Protocol-Version")
    if version and version not in PROTOCOLS:
        return _refused(400, RPCError(INVALID_REQUEST, f"MCP-Protocol-Version {version[:40]} is not spoken here; "
                                      f"use one of {', '.join(PROTOCOLS)}."))
    protocol = state.sessions.protocol_of(session_id, g.actor.id, scope)
    if protocol is None:
        return _refused(404, RPCError(INVALID_REQUEST, "Unknown or ended session: initialize again."))
    return protocol


def _tool_of(state, scope: str, params: dict) -> tuple[str, str]:
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise RPCError(INVALID_PARAMS, "tools/call needs the tool's `name`.")
    if "arguments" in params and not isinstance(params["arguments"], dict):
        raise RPCError(INVALID_PARAMS, "`arguments` must be an object.")
    if scope:
        return scope, name
    server, separator, tool = name.partition(SEPARATOR)
    if not separator or server not in state.settings.servers or not tool:
        raise RPCError(INVALID_PARAMS, f"Unknown tool `{name[:200]}`: tools here are named <server>{SEPARATOR}<tool>.")
    return server, tool


def list_tools(state, actor, scope: str) -> list[dict]:
    """Return the tools ``actor`` may call on ``scope`` (every usable server when ""), each as its
    server describes it, named ``<server>__<tool>`` on ``/mcp``. On ``/mcp`` a server that is
    down is left out (logged); on ``/mcp/<server>`` its failure is the answer."""
    tools = []
    servers = [state.settings.servers[scope]] if scope else state.settings.usable_by(actor)
    for server in servers:
        try:
            offered = server_tools(state, server.name)
        except RPCError as error:
            if scope:
                raise
            log.warning("mcp: %s left out of tools/list: %s", server.name, error.message)
            continue
        for tool in offered:
            if may_call(state, actor, server.name, tool["name"]):
                tools.append(tool if scope else {**tool, "name": server.name + SEPARATOR + tool["name"]})
    return tools


def server_tools(state, server: str) -> list[dict]:
    """Return every tool ``server`` offers (all pages), read again after a few seconds."""
    cached = state.tool_lists.get(server)
    if cached is not None:
        return cached
    tools, cursor = [], None
    for _page in range(TOOL_LIST_MAX_PAGES):
        answer = state.upstreams[server].request("tools/list", {"cursor": cursor} if cursor else None)
        tools += [t for t in answer.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]
        cursor = answer.get("nextCursor")
        if not isinstance(cursor, str) or not cursor:
            break
    state.tool_lists.put(server, tools, TOOL_LIST_CACHE_SECONDS)
    return tools
