"""JSON Schema pieces that routes use to describe their answers (``Route.responses``).

A route's ``responses`` maps a status ("200", "201", ...) to the JSON Schema of that answer's
body, or to :func:`media` for an answer that is not JSON (a stream, a page, a CSV). /openapi.json
shows them, and the fuzz run (tests/core/test_fuzz.py) checks every answer against them.
"""
from __future__ import annotations

STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}


def obj(*required: str, **properties) -> dict:
    """Return an object schema with ``properties``, ``required`` naming those it always has."""
    return {"type": "object", "required": list(required), "properties": properties}


def array(items: dict) -> dict:
    """Return an array schema of ``items``."""
    return {"type": "array", "items": items}


def media(**content: dict) -> dict:
    """Return a response of other media types, e.g. ``media(**{"text/csv": STRING})``."""
    return {"content": {kind: {"schema": schema} for kind, schema in content.items()}}


# one server-sent event (a stream's schema describes each event, as OpenAPI 3.2's itemSchema)
SSE_EVENT = obj(event=STRING, data=STRING, id=STRING, retry=INTEGER)
SSE = media(**{"text/event-stream": SSE_EVENT})
HTML = media(**{"text/html": STRING})

# the limits of one scope and id: ``rate_limits.<scope>.<id>`` in config, ``/admin/limits``
# and a new key's ``limits``
LIMITS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests_per_minute": {"type": ["integer", "null"], "minimum": 1},
        "tokens_per_minute": {"type": ["integer", "null"], "minimum": 1},
        "daily_budget_usd": {"type": ["number", "null"], "minimum": 0},
        "monthly_budget_usd": {"type": ["number", "null"], "minimum": 0},
        # the model names (aliases or upstream names) this scope may call; absent: any
        "models": {"type": ["array", "null"], "maxItems": 500,
                   "items": {"type": "string", "minLength": 1, "maxLength": 200}},
    },
}
