"""Reading a request's JSON object body, the one way plugins' routes refuse a bad one."""
from __future__ import annotations

import json

from flask import request

from .errors import PortalError


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
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise PortalError("The request body is not valid JSON.", status=400, code="invalid_json") from None
    if not isinstance(body, dict):
        raise PortalError("The request body must be a JSON object.", status=400, code="invalid_json")
    return body
