"""The chat plugin's config section: its schema and the settings read from it once at startup."""
from __future__ import annotations

from agent_portal.types import ROLES

NAME = "chat"


def config_schema() -> dict:
    """Return the JSON schema of ``plugins.chat``."""
    model = {
        "type": "object",
        "additionalProperties": False,
        "required": ["backend"],
        "properties": {
            "backend": {"type": "string"},
            "model": {"type": "string"},
            "fallbacks": {"type": "array", "items": {"type": "string"}},
            "input_cost_per_token": {"type": "number", "minimum": 0},
            "output_cost_per_token": {"type": "number", "minimum": 0},
            "roles": {"type": "array", "items": {"enum": list(ROLES)}},
            # Open WebUI groups (portal_actor_groups) whose members may call it, whatever their role
            "groups": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "continue_on_failure": {"type": "boolean"},
            # whether the model takes a prefill (an answer to continue); unset: tried, and learned
            "supports_prefill": {"type": "boolean"},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "connect_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
            "first_byte_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 60},
            "first_token_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "call_budget_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 120},
            "continue_on_failure": {"type": "boolean", "default": True},
            "circuit_breaker": {"type": "object", "additionalProperties": False, "default": {}, "properties": {
                "failures": {"type": "integer", "minimum": 1, "default": 5},
                "cooloff_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 30},
            }},
            "between_chunks_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 60},
            "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 15},
            "retries": {"type": "integer", "minimum": 0, "maximum": 5, "default": 2},
            "retry_max_wait_seconds": {"type": "number", "minimum": 0, "default": 5},
            "capture_payloads": {"type": "boolean", "default": False},
            "expose_upstream_models": {"type": "boolean", "default": True},
            "reserve_completion_tokens": {"type": "integer", "minimum": 1, "default": 1024},
            "models": {"type": "object", "additionalProperties": model, "default": {}},
        },
    }


class ChatSettings:
    """This plugin's section, read once at startup."""

    def __init__(self, section: dict):
        self.connect = section["connect_timeout_seconds"]
        # the first token's limit (first_byte_timeout_seconds is its older name)
        self.first_byte = section.get("first_token_timeout_seconds") or section["first_byte_timeout_seconds"]
        self.call_budget = section["call_budget_seconds"]
        self.continue_on_failure = section["continue_on_failure"]
        self.breaker_failures = section["circuit_breaker"]["failures"]
        self.breaker_cooloff = section["circuit_breaker"]["cooloff_seconds"]
        self.between_chunks = section["between_chunks_timeout_seconds"]
        self.heartbeat = min(section["heartbeat_seconds"], self.between_chunks)
        self.retries = section["retries"]
        self.retry_max_wait = section["retry_max_wait_seconds"]
        self.capture = section["capture_payloads"]
        self.expose_upstream_models = section["expose_upstream_models"]
        self.reserve_completion_tokens = section["reserve_completion_tokens"]
        self.models = section["models"]
        # a stream's socket waits longer than the relay's own stall limit, which ends it first
        self.stream_read_timeout = self.between_chunks + 5
