"""The open_notebook plugin's config section: its schema and the settings read from it."""
from __future__ import annotations

import urllib3

from agent_portal.config import strict_object

NAME = "open_notebook"


def config_schema() -> dict:
    """Return the JSON schema of ``plugins.open_notebook``."""
    return strict_object({
        "url": {"type": "string", "pattern": "^https?://"},
        "password": {"type": ["string", "null"]},
        "connect_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        "ask_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 300},
        "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 15},
        "input_cost_per_token": {"type": "number", "minimum": 0},
        "output_cost_per_token": {"type": "number", "minimum": 0},
        "reserve_completion_tokens": {"type": "integer", "minimum": 1, "default": 1024},
        "max_question_chars": {"type": "integer", "minimum": 1, "default": 8000},
        "required": {"type": "boolean", "default": False},
    }, required=["url"])


class NotebookSettings:
    """This plugin's section, read once at startup."""

    def __init__(self, section: dict):
        self.url = section["url"].rstrip("/")
        self.password = section.get("password")
        connect = section["connect_timeout_seconds"]
        self.timeout = urllib3.Timeout(connect=connect, read=section["timeout_seconds"])
        self.ask_timeout = urllib3.Timeout(connect=connect, read=section["ask_timeout_seconds"])
        self.heartbeat = section["heartbeat_seconds"]
        self.prices = (section.get("input_cost_per_token"), section.get("output_cost_per_token"))
        self.reserve_completion_tokens = section["reserve_completion_tokens"]
        self.max_question_chars = section["max_question_chars"]
        self.required = section["required"]
