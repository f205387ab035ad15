"""The perplexica plugin's config section: its schema and the settings read from it at startup."""
from __future__ import annotations

import urllib3

from agent_portal.config import strict_object
from agent_portal.types import ROLES

NAME = "perplexica"
SOURCES = ("web", "academic", "discussions")
MODES = ("speed", "balanced", "quality")


def config_schema() -> dict:
    """Return the JSON schema of ``plugins.perplexica``."""
    model = strict_object({"provider_id": {"type": "string", "minLength": 1},
                           "key": {"type": "string", "minLength": 1}}, required=["provider_id", "key"])
    source_list = {"type": "array", "items": {"enum": list(SOURCES)}, "uniqueItems": True}
    return strict_object({
        "url": {"type": "string", "pattern": "^https?://"},
        "chat_model": model,
        "embedding_model": model,
        "sources": strict_object({"user": source_list, "admin": source_list}),
        "optimization_mode": {"enum": list(MODES), "default": "speed"},
        "connect_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 120},
        "between_events_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 15},
        "input_cost_per_token": {"type": "number", "minimum": 0},
        "output_cost_per_token": {"type": "number", "minimum": 0},
        "reserve_completion_tokens": {"type": "integer", "minimum": 1, "default": 1024},
        "max_query_chars": {"type": "integer", "minimum": 1, "default": 4000},
        "max_history_turns": {"type": "integer", "minimum": 0, "default": 20},
        "expose_as_models": {"type": "boolean", "default": True},
        "required": {"type": "boolean", "default": False},
    }, required=["url", "chat_model", "embedding_model"])


class SearchSettings:
    """This plugin's section, read once at startup."""

    def __init__(self, section: dict):
        self.url = section["url"].rstrip("/")
        self.chat_model = {"providerId": section["chat_model"]["provider_id"], "key": section["chat_model"]["key"]}
        self.embedding_model = {"providerId": section["embedding_model"]["provider_id"],
                                "key": section["embedding_model"]["key"]}
        allowed = section.get("sources") or {}
        self.sources = {role: tuple(allowed.get(role, SOURCES)) for role in ROLES}
        self.mode = section["optimization_mode"]
        connect = section["connect_timeout_seconds"]
        self.timeout = urllib3.Timeout(connect=connect, read=section["timeout_seconds"])
        self.stream_timeout = urllib3.Timeout(connect=connect, read=section["between_events_timeout_seconds"])
        self.between_events = section["between_events_timeout_seconds"]
        self.heartbeat = min(section["heartbeat_seconds"], self.between_events)
        self.prices = (section.get("input_cost_per_token"), section.get("output_cost_per_token"))
        self.reserve_completion_tokens = section["reserve_completion_tokens"]
        self.max_query_chars = section["max_query_chars"]
        self.max_history_turns = section["max_history_turns"]
        self.expose_as_models = section["expose_as_models"]
        self.required = section["required"]

    def allowed_sources(self, actor) -> tuple:
        """Return the sources ``actor``'s role may search."""
        return self.sources.get(actor.role, ())
