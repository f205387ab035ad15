"""Cross-origin access for the pages that call the portal from another origin (Open WebUI's
Monitoring tab on its own port), limited to the origins ``portal.cors_origins`` names."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import Flask, Response, request

from .errors import error_response

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


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _request_origin(req) -> str | None:
    """Return the scheme://host[:port] the browser says the request came from (Origin, else Referer)."""
    origin = req.headers.get("Origin")
    if origin and origin != "null":
        return origin.rstrip("/")
    referer = req.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
    return None


class TrustedProxies:
    """``portal.trusted_proxies``: the addresses (or networks) of the proxies in front of the
    portal (Kong), the only peers whose ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` count."""

    def __init__(self, entries: list[str]):
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]

    def trusts(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address((address or "").split("%", 1)[0])
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def own_origin(self, req) -> str:
        """Return the portal's own ``scheme://host[:port]`` as the browser sees it: the
        request's, or what a trusted proxy says it forwarded."""
        scheme, host = req.scheme, req.host
        if self.trusts(req.remote_addr):
            scheme = req.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip().lower() or scheme
            host = req.headers.get("X-Forwarded-Host", host).split(",")[0].strip() or host
        return _normal_origin(f"{scheme}://{host}")


def _normal_origin(origin: str) -> str:
    """Return ``origin`` lower-cased, without a port that is its scheme's default."""
    try:
        parts = urlsplit(origin.lower())
        port = parts.port
    except ValueError:
        return origin.lower()
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def cross_site_refusal(req, allowed_origins: set, proxies: TrustedProxies | None = None) -> Response | None:
    """Return a 403 (or 415) when the only credential is the ``token`` cookie and the request
    could have been sent by another site: a state-changing method or a WebSocket upgrade whose
    Origin (or Referer) is neither the portal's own site (scheme and host, see
    :class:`TrustedProxies`) nor in ``cors_origins``, or a body that is not
    ``application/json``. Callers with an Authorization header are not affected.
    """
    if "Authorization" in req.headers or not req.cookies.get("token"):
        return None
    upgrade = req.headers.get("Upgrade", "").lower() == "websocket"
    if req.method in SAFE_METHODS and not upgrade:
        return None
    origin = _request_origin(req)
    own = (proxies or TrustedProxies([])).own_origin(req)
    if origin is None or (_normal_origin(origin) != own and origin not in allowed_origins):
        return error_response(403, "A request authenticated by the portal's cookie must come from the "
                              "portal's own site or an origin in cors_origins.", code="cross_site_request")
    has_body = (req.content_length or 0) > 0 or "chunked" in req.headers.get("Transfer-Encoding", "").lower()
    if has_body and req.mimetype != "application/json":
        return error_response(415, "A request authenticated by the portal's cookie must send its body as "
                              "application/json.", code="unsupported_media_type")
    return None
