"""One JSON error shape for everything the portal answers with an error.

Shape: ``{"error": {"message", "type", "code", "request_id"}}`` — OpenAI's error object, so
clients of ``/v1/*`` read portal errors the same way they read the upstream's.
"""
from __future__ import annotations

import json
import logging

from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException

log = logging.getLogger("agent_portal.errors")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}


class StartupError(Exception):
    """Raised by the core or a plugin to refuse to boot; the message names the plugin and key."""


class PortalError(Exception):
    """An error answered to the caller in the portal's JSON shape."""

    status = 400
    type = None

    def __init__(self, message, status=None, code=None, headers=None, type=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.code = code
        self.headers = headers or {}
        if type is not None:
            self.type = type


class AuthError(PortalError):
    """A credential was presented and is bad (401), forbidden (403) or cannot be checked (503)."""

    status = 401


def error_body(status, message, code=None, type=None) -> dict:
    """Return the JSON error object for ``status`` with the current request id."""
    return {
        "error": {
            "message": message,
            "type": type or _TYPES.get(status, "error"),
            "code": code,
            "request_id": g.get("request_id") if g else None,
        }
    }


def error_response(status, message, code=None, headers=None, type=None) -> Response:
    """Return a Flask response carrying the portal's JSON error shape."""
    body = json.dumps(error_body(status, message, code, type))
    response = Response(body, status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app: Flask) -> None:
    """Route every error Flask or a view raises through :func:`error_response`."""

    @app.errorhandler(PortalError)
    def _portal_error(exc: PortalError):
        return error_response(exc.status, exc.message, exc.code, exc.headers, exc.type)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        message = exc.description or exc.name
        if exc.code == 400 and "JSON" in (message or ""):
            message = "The request body is not valid JSON."
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return error_response(exc.code or 500, message, headers=headers)

    @app.errorhandler(RecursionError)
    def _too_deep(exc: RecursionError):
        # only a hostile body gets here (JSON nested thousands deep): the caller's fault
        return error_response(400, "The request body is nested too deeply.", code="invalid_json")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "Internal error; the request id identifies it in the logs.")
