"""A careful reverse proxy for admin UIs and admin APIs mounted under a portal prefix.

It never lets a path leave the configured upstream, never forwards the portal's own credentials,
strips hop-by-hop headers, streams bodies both ways, and rewrites what the upstream says about
itself (redirects, cookies, framing policy) into the portal's prefix.
"""
from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import urllib3
from flask import Response, request
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, ReadTimeoutError

from .errors import PortalError

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "trailers", "transfer-encoding", "upgrade", "proxy-connection"}
NEVER_FORWARD = {"authorization", "host", "content-length", "x-openwebui-user-jwt", "x-request-id",
                 # who the caller is, or what they asked for, as other proxies would vouch for it
                 "forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "cf-connecting-ip",
                 "remote-user", "x-remote-user", "x-webauth-user", "x-user", "x-email",
                 "x-http-method-override", "x-http-method", "x-method-override",
                 "x-original-url", "x-rewrite-url", "x-original-uri", "x-api-key", "x-client-cert",
                 "ssl-client-cert", "x-client-verify", "x-client-dn"}
NEVER_FORWARD_PREFIXES = ("x-forwarded-", "x-auth-request-", "x-openwebui-", "x-remote-", "x-original-",
                          "x-ssl-", "x-client-cert")
_FORBIDDEN_ENCODED = re.compile(r"%(2f|5c|2e|00)", re.I)
_COOKIE_PATH = re.compile(r"(;\s*path=)([^;]*)", re.I)
_COOKIE_DOMAIN = re.compile(r";\s*domain=[^;]*", re.I)


def raw_subpath(prefix: str) -> str:
    """Return the still-encoded part of the request path after ``prefix`` (no leading slash).

    Raises a 400 :class:`PortalError` for any path that tries to leave the upstream: ``..`` or
    ``.`` segments, encoded slashes, backslashes or dots, NUL, absolute URLs and ``//host``.
    """
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
    raw = raw.split("?", 1)[0]
    if "://" in raw[:16]:  # absolute-form request target
        raw = "/" + raw.split("://", 1)[1].split("/", 1)[-1]
    if not raw.startswith(prefix):
        raise PortalError("The path does not belong to this proxy.", status=400, code="bad_path")
    rest = raw[len(prefix):]
    if rest.startswith("/"):
        rest = rest[1:]
    decoded = unquote(rest)
    if (_FORBIDDEN_ENCODED.search(rest) or "\\" in decoded or "\x00" in decoded or decoded.startswith("/")
            or "://" in decoded or any(seg in ("..", ".") for seg in decoded.split("/"))
            or any(ord(c) < 32 for c in decoded)):
        raise PortalError("The path tries to leave the proxied service.", status=400, code="path_escape")
    return rest


def cookie_prefix(prefix: str) -> str:
    """Return the name prefix under which the portal keeps the cookies of the UI at ``prefix``."""
    return "ap_" + re.sub(r"[^A-Za-z0-9]", "_", prefix.strip("/")) + "__"


def forward_headers(extra: dict, prefix: str = "") -> dict:
    """Return the request headers to send upstream: hop-by-hop headers, the portal's credentials,
    identity headers (``X-Forwarded-*``, ``Remote-User``...) and every cookie but the upstream's
    own (those it set through this proxy, kept under :func:`cookie_prefix`) removed."""
    connection_tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    own = cookie_prefix(prefix)
    headers = {}
    for key, value in request.headers.items():
        lower = key.lower()
        if (lower in HOP_BY_HOP or lower in NEVER_FORWARD or lower in connection_tokens
                or lower.startswith(NEVER_FORWARD_PREFIXES)):
            continue
        if lower == "cookie":
            kept = [c.strip()[len(own):] for c in value.split(";") if c.strip().startswith(own)]
            if not kept:
                continue
            value = "; ".join(kept)
        headers[key] = value
    headers.update(extra)
    return headers


def rewrite_location(location: str, base_url: str, prefix: str) -> str:
    """Return ``location`` mapped from the upstream's address space into ``prefix``."""
    base = urlsplit(base_url)
    target = urlsplit(location)
    base_path = base.path.rstrip("/")
    if target.scheme and (target.scheme, target.netloc) != (base.scheme, base.netloc):
        return location  # somewhere else entirely (an identity provider, say)
    path = target.path
    if not path.startswith("/"):
        return location  # relative to the current page: still under the prefix
    if base_path and path.startswith(base_path):
        path = path[len(base_path):]
    rewritten = prefix.rstrip("/") + (path if path.startswith("/") else "/" + path)
    return rewritten + (f"?{target.query}" if target.query else "") + (f"#{target.fragment}" if target.fragment else "")


def rewrite_cookie(header: str, prefix: str) -> str:
    """Return a ``Set-Cookie`` value renamed under :func:`cookie_prefix`, its Path moved under
    ``prefix`` and its Domain dropped."""
    header = cookie_prefix(prefix) + header.lstrip()
    header = _COOKIE_DOMAIN.sub("", header)
    if _COOKIE_PATH.search(header):
        return _COOKIE_PATH.sub(lambda m: m.group(1) + prefix.rstrip("/") + (
            m.group(2) if m.group(2).startswith("/") else "/" + m.group(2)), header)
    return header + f"; Path={prefix.rstrip('/')}/"


def frame_policy(csp: str | None, ancestors: str) -> str:
    """Return ``csp`` without its ``frame-ancestors`` directive, plus the portal's own."""
    directives = [d.strip() for d in (csp or "").split(";") if d.strip()]
    kept = [d for d in directives if not d.lower().startswith("frame-ancestors")]
    return "; ".join(kept + [f"frame-ancestors {ancestors}"])


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


def _send(portal, url, body, headers, timeout):
    """Send the request; a GET, HEAD or OPTIONS whose pooled connection the service had closed
    meanwhile (a keep-alive it timed out) is sent once more, on a new one."""
    for attempt in (1, 2):
        try:
            return portal.pool.urlopen(request.method, url, body=body, headers=headers,
                                       timeout=urllib3.Timeout(connect=5, read=timeout),
                                       preload_content=False, decode_content=False, redirect=False,
                                       retries=False)
        except ProtocolError:
            if attempt == 2 or request.method not in _IDEMPOTENT:
                raise


def proxy(portal, base_url: str, prefix: str, extra_headers: dict | None = None,
          timeout: float = 30.0, frame_ancestors: str | None = None, body_filter=None) -> Response:
    """Forward the current request to ``base_url`` + the path after ``prefix``; stream the answer.

    ``body_filter(bytes, content_type) -> bytes``, when given, rewrites a whole (non-streamed)
    answer body, for JSON APIs whose links point at the upstream.
    """
    rest = raw_subpath(prefix)
    url = base_url.rstrip("/") + "/" + rest
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    headers = forward_headers(extra_headers or {}, prefix)
    body = None
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        body = request.get_data(cache=False)  # bounded by MAX_CONTENT_LENGTH (413 beyond)
    try:
        upstream = _send(portal, url, body, headers, timeout)
    except NewConnectionError as exc:
        raise PortalError("The proxied service refused the connection.", status=502,
                          code="upstream_unreachable") from exc
    except ReadTimeoutError as exc:
        raise PortalError("The proxied service did not answer in time.", status=504,
                          code="upstream_timeout") from exc
    except (HTTPError, OSError) as exc:
        raise PortalError("The proxied service could not be reached.", status=502,
                          code="upstream_unreachable") from exc

    out_headers = []
    connection_tokens = {t.strip().lower() for t in upstream.headers.get("Connection", "").split(",")}
    for key, value in upstream.headers.items():
        lower = key.lower()
        if lower in HOP_BY_HOP or lower in connection_tokens or lower == "x-frame-options":
            continue
        if lower == "content-security-policy":
            continue
        if lower == "location":
            value = rewrite_location(value, base_url, prefix)
        elif lower == "set-cookie":
            value = rewrite_cookie(value, prefix)
        elif lower == "content-length" and body_filter is not None:
            continue
        out_headers.append((key, value))
    if frame_ancestors is not None or "content-security-policy" in {k.lower() for k in upstream.headers}:
        out_headers.append(("Content-Security-Policy",
                            frame_policy(upstream.headers.get("Content-Security-Policy"), frame_ancestors or "'self'")))

    if body_filter is not None:
        data = upstream.read()
        upstream.release_conn()
        data = body_filter(data, upstream.headers.get("Content-Type", ""))
        return Response(data, status=upstream.status, headers=out_headers)

    def stream():
        try:
            for block in upstream.stream(65536, decode_content=False):
                yield block
        finally:
            upstream.release_conn()

    return Response(stream(), status=upstream.status, headers=out_headers, direct_passthrough=True)
