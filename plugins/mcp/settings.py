"""The mcp plugin's config section: its schema, and the servers and tools read from it at startup,
with who may use each."""
from __future__ import annotations

import re

from agent_portal.config import strict_object
from agent_portal.types import ROLES

NAME = "mcp"
# a server's name is a path segment and the first part of a namespaced tool name (server__tool),
# so it has no "_" (the separator stays unambiguous) and no "/"
SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
SEPARATOR = "__"

_ROLES = {"type": "array", "items": {"enum": list(ROLES)}, "uniqueItems": True}
_USERS = {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}
_PRICE = {"type": "number", "minimum": 0}


def config_schema() -> dict:
    """Return the JSON schema of ``plugins.mcp``."""
    tool = strict_object({"roles": _ROLES, "users": _USERS, "price_per_call": _PRICE,
                          "enabled": {"type": "boolean", "default": True}})
    server = strict_object({
        "url": {"type": "string", "pattern": "^https?://"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "command": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "roles": {**_ROLES, "default": list(ROLES)},
        "users": _USERS,
        "price_per_call": {**_PRICE, "default": 0.0},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        "tools": {"type": "object", "additionalProperties": tool},
    })
    return strict_object({
        "servers": {"type": "object", "minProperties": 1, "additionalProperties": server,
                    "propertyNames": {"pattern": SERVER_NAME.pattern}},
        "connect_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
        "max_request_bytes": {"type": "integer", "minimum": 1024, "default": 1_000_000},
        "max_result_bytes": {"type": "integer", "minimum": 1024, "default": 4_000_000},
        "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 15},
        "required": {"type": "boolean", "default": False},
    }, required=["servers"])


def config_errors(section: dict) -> list[str]:
    """Return what the schema cannot say is wrong: a server with both or neither of url and command."""
    errors = []
    for name, server in (section.get("servers") or {}).items():
        if ("url" in server) == ("command" in server):
            errors.append(f"plugins.mcp.servers.{name}: give either url (streamable HTTP) or command (stdio), "
                          "not both or neither")
    return errors


class ToolRule:
    """What config says of one tool: who may call it, its price, whether it is on."""

    def __init__(self, rule: dict, server: "ServerSettings"):
        self.roles = tuple(rule.get("roles", server.roles))
        self.users = tuple(rule.get("users", server.users))
        self.price_per_call = rule.get("price_per_call", server.price_per_call)
        self.enabled = rule.get("enabled", True)


class ServerSettings:
    """One configured MCP server."""

    def __init__(self, name: str, section: dict):
        self.name = name
        self.url = section.get("url")
        self.headers = dict(section.get("headers") or {})
        self.command = list(section.get("command") or [])
        self.env = dict(section.get("env") or {})
        self.roles = tuple(section["roles"])
        self.users = tuple(section.get("users") or ())
        self.price_per_call = section["price_per_call"]
        self.timeout = section["timeout_seconds"]
        self.tools = {tool: ToolRule(rule, self) for tool, rule in (section.get("tools") or {}).items()}

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def rule(self, tool: str) -> ToolRule:
        """Return the rule of ``tool`` (the server's own when config names no rule for it)."""
        return self.tools.get(tool) or ToolRule({}, self)

    def admits(self, actor) -> bool:
        """Return True when ``actor`` may use this server at all."""
        return _admitted(actor, self.roles, self.users)

    def may_call(self, actor, tool: str) -> bool:
        """Return True when ``actor`` may call ``tool`` here (the switch aside)."""
        rule = self.rule(tool)
        return self.admits(actor) and _admitted(actor, rule.roles, rule.users)


def _admitted(actor, roles: tuple, users: tuple) -> bool:
    # users named are let in whatever their role; otherwise the role decides
    return actor.id in users or actor.role in roles


class MCPSettings:
    """This plugin's section, read once at startup."""

    def __init__(self, section: dict):
        self.servers = {name: ServerSettings(name, server) for name, server in section["servers"].items()}
        self.connect_timeout = section["connect_timeout_seconds"]
        self.max_request_bytes = section["max_request_bytes"]
        self.max_result_bytes = section["max_result_bytes"]
        self.heartbeat = section["heartbeat_seconds"]
        self.required = section["required"]

    def usable_by(self, actor) -> list[ServerSettings]:
        """Return the servers ``actor`` may use, in name order."""
        return [server for _name, server in sorted(self.servers.items()) if server.admits(actor)]
