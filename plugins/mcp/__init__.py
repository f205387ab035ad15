"""Tools: MCP servers behind the portal, each tool call authenticated, allowed, limited, metered.

``/mcp`` (every server the caller may use, tools named ``<server>__<tool>``) and ``/mcp/<server>``
speak MCP's streamable HTTP transport (``gateway``), so the official SDK client, Open WebUI
(``auth_type: "session"``) and LangGraph's MCP adapters connect unchanged. Upstream servers are
streamable HTTP (``upstream``) or stdio children the portal starts (``stdio``). Each tools/call
is a ledger row (``calls``); admins switch tools off at runtime (``switches``, ``/admin/mcp``).
"""
from __future__ import annotations

from flask import g

from agent_portal import HealthCheck, PortalError, Route, StartupError, hookimpl
from agent_portal.cache import TTLCache
from agent_portal.routing import bound_view
from agent_portal.schemas import BOOLEAN, NULLABLE_STRING, NUMBER, STRING, array, obj

from .gateway import MCP_ANSWERS, mcp_view, server_tools
from .jsonrpc import RPCError
from .sessions import SessionStore
from .settings import NAME, MCPSettings, config_errors, config_schema
from .stdio import StdioServer
from .switches import ToolSwitches
from .upstream import HttpServer


class MCPState:
    def __init__(self, portal, settings: MCPSettings):
        self.settings = settings
        self.upstreams = {name: (HttpServer(portal, server, settings.connect_timeout, settings.max_result_bytes)
                                 if server.transport == "http" else StdioServer(server, settings.max_result_bytes))
                          for name, server in settings.servers.items()}
        self.sessions = SessionStore(portal.database())
        self.switches = ToolSwitches(portal.database())
        self.tool_lists = TTLCache(max_entries=1000)


@hookimpl
def portal_config_schema():
    return {NAME: config_schema()}


@hookimpl
def portal_startup(portal):
    section = portal.plugin_config(NAME)
    errors = config_errors(section)
    if errors:
        raise StartupError("plugin mcp: " + "; ".join(errors))
    portal.extensions[NAME] = MCPState(portal, MCPSettings(section))


@hookimpl
def portal_shutdown(portal):
    """Stop the stdio children and end the upstream sessions."""
    state = portal.extensions.get(NAME)
    for upstream in (state.upstreams.values() if state else ()):
        upstream.close()


@hookimpl
def portal_health_checks(portal):
    state = portal.extensions[NAME]

    def checker(name):
        def check(portal):
            try:
                state.upstreams[name].request("ping", None, timeout=2.5)
            except RPCError as error:
                return {"status": "down", "detail": error.message}
            return {"status": "up", "detail": f"{state.settings.servers[name].transport}, answers ping"}
        return check

    return [HealthCheck(f"{NAME}:{name}", checker(name), timeout=3.0, required=state.settings.required)
            for name in sorted(state.upstreams)]


def _tool_entries(portal) -> list[dict]:
    """Return every server with its tools as config and the switches have them (admins)."""
    state = portal.extensions[NAME]
    switches = state.switches.all()
    servers = []
    for name, server in sorted(state.settings.servers.items()):
        entry = {"name": name, "transport": server.transport, "roles": list(server.roles), "users": list(server.users),
                 "price_per_call": server.price_per_call, "reachable": True, "error": None, "tools": []}
        try:
            offered = [t["name"] for t in server_tools(state, name)]
        except RPCError as error:
            entry["reachable"], entry["error"], offered = False, error.message, []
        for tool in sorted(set(offered) | set(server.tools) | {t for s, t in switches if s == name}):
            rule, switch = server.rule(tool), switches.get((name, tool))
            entry["tools"].append({"name": tool, "offered": tool in offered, "roles": list(rule.roles),
                                   "users": list(rule.users), "price_per_call": rule.price_per_call,
                                   "configured_enabled": rule.enabled,
                                   "enabled": rule.enabled if switch is None else switch["enabled"],
                                   "switched_by": switch and switch["changed_by"],
                                   "switched_at": switch and switch["changed_at"]})
        servers.append(entry)
    return servers


_NAMES = array(STRING)
TOOL_ENTRY = obj("name", "enabled", name=STRING, offered=BOOLEAN, roles=_NAMES, users=_NAMES, price_per_call=NUMBER,
                 configured_enabled=BOOLEAN, enabled=BOOLEAN, switched_by=NULLABLE_STRING,
                 switched_at={"type": ["number", "null"]})
SERVER_ENTRY = obj("name", "tools", name=STRING, transport={"enum": ["http", "stdio"]}, roles=_NAMES, users=_NAMES,
                   price_per_call=NUMBER, reachable=BOOLEAN, error=NULLABLE_STRING, tools=array(TOOL_ENTRY))
SWITCHED = obj("server", "tool", server=STRING, tool=STRING, enabled=BOOLEAN, switched_by=NULLABLE_STRING)


def _known(portal, server: str) -> None:
    if server not in portal.extensions[NAME].settings.servers:
        raise PortalError(f"No MCP server `{server}` is configured.", status=404, code="not_found")


def admin_tools(portal):
    """Every MCP server and its tools: who may call each, its price, on or off and who switched it."""
    return {"servers": _tool_entries(portal)}


def admin_switch(portal, server: str, tool: str):
    """Switch a tool on or off at runtime ({"enabled": bool}); every worker follows within seconds."""
    _known(portal, server)
    body = g.json_body  # {"enabled": bool}, checked against the route's schema
    portal.extensions[NAME].switches.set(server, tool[:200], body["enabled"], g.actor.id)
    return {"server": server, "tool": tool, "enabled": body["enabled"], "switched_by": g.actor.id}


def admin_unswitch(portal, server: str, tool: str):
    """Forget a tool's switch: config's `enabled` decides again."""
    _known(portal, server)
    portal.extensions[NAME].switches.clear(server, tool[:200])
    return {"server": server, "tool": tool, "switched_by": None}


@hookimpl
def portal_register_routes(portal):
    limit = portal.extensions[NAME].settings.max_request_bytes
    routes = [Route(path, bound_view(portal, name, mcp_view), methods=("POST", "DELETE"), access="user", name=name,
                    max_body_bytes=limit, responses=MCP_ANSWERS,
                    summary="MCP streamable HTTP: one JSON-RPC message (initialize, ping, tools/list, tools/call); "
                            "DELETE ends the session")
              for path, name in (("/mcp", "mcp"), ("/mcp/<server>", "mcp_server"))]
    switch_path = "/admin/mcp/servers/<server>/tools/<path:tool>"
    return routes + [
        Route("/admin/mcp/tools", bound_view(portal, "mcp_admin_tools", admin_tools), access="admin",
              responses={"200": obj("servers", servers=array(SERVER_ENTRY))}),
        Route(switch_path, bound_view(portal, "mcp_admin_switch", admin_switch), methods=("PUT",), access="admin",
              name="mcp_admin_switch", responses={"200": SWITCHED}, schema={"type": "object", "required": ["enabled"], "additionalProperties": False,
                                               "x-error-code": "invalid_switch",
                                               "properties": {"enabled": {"type": "boolean"}}}),
        Route(switch_path, bound_view(portal, "mcp_admin_unswitch", admin_unswitch), methods=("DELETE",),
              access="admin", name="mcp_admin_unswitch", responses={"200": SWITCHED}),
    ]
