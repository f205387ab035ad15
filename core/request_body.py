"""Parsing JSON from a caller, and reading a request's JSON object body: the one way the core
and the plugins' routes refuse a bad one."""
from __future__ import annotations

import json

from flask import request

from .errors import PortalError


def parse_json(raw):
    """Return the JSON value of ``raw``; a 400 :class:`PortalError` (``invalid_json``) for bad or
    too-deep JSON (also outside a request, e.g. a WebSocket message)."""
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise PortalError("The request body is nested too deeply.", code="invalid_json") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PortalError("The request body is not valid JSON.", code="invalid_json") from exc


def json_object(required: bool = True) -> dict:
    """Return the request body's JSON object ({} for an empty body unless ``required``).

    Raises 400 ``invalid_json`` for a body that is not JSON or not an object (the size was
    already bounded by ``portal.max_body_bytes``).
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise PortalError("The request needs a JSON object body.", status=400, code="invalid_json")
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise PortalError("The request body must be a JSON object.", status=400, code="invalid_json")
    return body
