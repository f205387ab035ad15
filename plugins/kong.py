"""Kong's Admin API behind the portal: admin only, read-only unless config allows a write.

The open-source Admin API has no authentication of its own, so this proxy is the only door to
it: ``/kong-admin/<path>``. ``next`` pagination links are rewritten into the portal's path.
"""
from __future__ import annotations

import json
import re

from flask import request

from agent_portal import Embed, HealthCheck, PortalError, Route, hookimpl
from agent_portal.config import strict_object
from agent_portal.proxy import proxy

NAME = "kong"
PREFIX = "/kong-admin"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        "admin_url": {"type": "string", "pattern": "^https?://"},
        "manager_url": {"type": ["string", "null"], "pattern": "^https?://"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 15},
        "allow_writes": {"type": "array", "default": [], "items": {
            "type": "object", "additionalProperties": False, "required": ["methods", "paths"],
            "properties": {"methods": {"type": "array", "items": {"enum": list(WRITE_METHODS)}},
                           "paths": {"type": "array", "items": {"type": "string"}}}}},
        "required": {"type": "boolean", "default": False},
    }, required=["admin_url"])}


def path_pattern(glob: str) -> re.Pattern:
    """Return the regex of an ``allow_writes`` path: ``*`` matches within one path segment,
    ``**`` across segments; everything else is literal."""
    parts = re.split(r"(\*\*|\*)", glob)
    regex = "".join("[^/]*" if p == "*" else ".*" if p == "**" else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


def write_allowed(settings: dict, method: str, path: str) -> bool:
    """Return True when ``allow_writes`` lets ``method`` change ``path`` (``*`` one segment,
    ``**`` any depth)."""
    path = "/" + path.lstrip("/")
    return any(method in rule["methods"] and any(path_pattern(p).match(path) for p in rule["paths"])
               for rule in settings["allow_writes"])


def rewrite_next(body: bytes, content_type: str) -> bytes:
    """Point Kong's ``next`` pagination link at the portal's proxy path."""
    if "json" not in content_type:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and isinstance(data.get("next"), str) and data["next"].startswith("/"):
        data["next"] = PREFIX + data["next"]
        return json.dumps(data).encode()
    return body


@hookimpl
def portal_register_routes(portal):
    settings = portal.plugin_config(NAME)

    def admin_api(subpath=""):
        if request.method in WRITE_METHODS and not write_allowed(settings, request.method, subpath):
            raise PortalError(f"{request.method} on the Kong Admin API is not allowed by this portal's "
                              "config (plugins.kong.allow_writes).", status=403, code="read_only")
        return proxy(portal, settings["admin_url"], PREFIX, settings["headers"], settings["timeout_seconds"],
                     body_filter=rewrite_next)

    methods = ("GET", "POST", "PUT", "PATCH", "DELETE")
    return [Route(PREFIX + "/", admin_api, methods=methods, access="admin", name="admin_api_root"),
            Route(PREFIX + "/<path:subpath>", admin_api, methods=methods, access="admin")]


@hookimpl
def portal_health_checks(portal):
    settings = portal.plugin_config(NAME)

    def check(portal):
        base = settings["admin_url"].rstrip("/")
        status = portal.http.get(base + "/status", headers=settings["headers"], timeout=3)
        if status.status_code != 200:
            return {"status": "down", "detail": f"/status answered HTTP {status.status_code}"}
        body = status.json()
        reachable = (body.get("database") or {}).get("reachable", True)
        server = body.get("server") or {}
        node = portal.http.get(base + "/", headers=settings["headers"], timeout=3)
        info = node.json() if node.status_code == 200 else {}
        return {"status": "up" if reachable else "degraded",
                "detail": "database reachable" if reachable else "database unreachable",
                "version": info.get("version"), "hostname": info.get("hostname"),
                "connections_active": server.get("connections_active"),
                "total_requests": server.get("total_requests")}

    return [HealthCheck(NAME, check, timeout=3.0, required=settings["required"])]


@hookimpl
def portal_embeds(portal):
    settings = portal.plugin_config(NAME)
    if not settings.get("manager_url"):
        return []
    return [Embed("kong-admin", "Kong Manager", settings["manager_url"])]
