"""The langgraph plugin's config section: its schema and the settings read from it at startup."""
from __future__ import annotations

import urllib3

from agent_portal.config import strict_object
from agent_portal.types import ROLES

NAME = "langgraph"
ROLE_LIST = {"type": "array", "items": {"enum": list(ROLES)}, "uniqueItems": True}


def config_schema() -> dict:
    """Return the JSON schema of ``plugins.langgraph``."""
    graph = strict_object({
        "roles": ROLE_LIST,
        "input_cost_per_token": {"type": "number", "minimum": 0},
        "output_cost_per_token": {"type": "number", "minimum": 0},
    })
    return strict_object({
        "url": {"type": "string", "pattern": "^https?://"},
        "api_key": {"type": ["string", "null"]},
        "connect_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 30},
        "run_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 600},
        "between_events_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 300},
        "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 15},
        "expose_as_models": {"type": "boolean", "default": True},
        "default_roles": {**ROLE_LIST, "default": list(ROLES)},
        "graphs": {"type": "object", "additionalProperties": graph, "default": {}},
        "reserve_completion_tokens": {"type": "integer", "minimum": 1, "default": 1024},
        "refresh_seconds": {"type": "number", "minimum": 1, "default": 30},
        "required": {"type": "boolean", "default": False},
    }, required=["url"])


class AgentSettings:
    """This plugin's section, read once at startup."""

    def __init__(self, section: dict):
        self.url = section["url"].rstrip("/")
        self.api_key = section.get("api_key")
        self.timeout = urllib3.Timeout(connect=section["connect_timeout_seconds"],
                                       read=section["timeout_seconds"])
        self.run_timeout = urllib3.Timeout(connect=section["connect_timeout_seconds"],
                                           read=section["run_timeout_seconds"])
        self.stream_timeout = urllib3.Timeout(connect=section["connect_timeout_seconds"],
                                              read=section["between_events_timeout_seconds"])
        self.between_events = section["between_events_timeout_seconds"]
        self.heartbeat = min(section["heartbeat_seconds"], self.between_events)
        self.expose_as_models = section["expose_as_models"]
        self.default_roles = set(section["default_roles"])
        self.graphs = section["graphs"]
        self.reserve_completion_tokens = section["reserve_completion_tokens"]
        self.refresh_seconds = section["refresh_seconds"]
        self.required = section["required"]

    def may_run(self, actor, graph_id: str) -> bool:
        """Return True when ``actor``'s role may run the graph ``graph_id``."""
        roles = self.graphs.get(graph_id, {}).get("roles")
        return actor.role in (set(roles) if roles is not None else self.default_roles)

    def prices(self, graph_id: str) -> tuple:
        """Return the graph's (input, output) USD per token, None where the config sets none."""
        entry = self.graphs.get(graph_id, {})
        return entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
