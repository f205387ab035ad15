"""Cross-origin access for the pages that call the portal from another origin (Open WebUI's
Monitoring tab on its own port), limited to the origins ``portal.cors_origins`` names."""
from __future__ import annotations

from flask import Flask, Response, request

ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID"
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


def install_cors(app: Flask, origins: list[str]) -> None:
    """Answer preflights and tag responses for ``origins``; does nothing when the list is empty.

    Must be installed before the access check: a browser's preflight carries no credentials.
    """
    allowed = set(origins)
    if not allowed:
        return

    @app.before_request
    def _preflight():
        origin = request.headers.get("Origin")
        if (request.method == "OPTIONS" and origin in allowed
                and request.headers.get("Access-Control-Request-Method")):
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
            return response
        return None

    @app.after_request
    def _tag(response):
        origin = request.headers.get("Origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After"
            response.vary.add("Origin")
        return response
