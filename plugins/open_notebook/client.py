"""Talking to Open NoteBook's API (``/api/...``) with the portal's password."""
from __future__ import annotations

import json
from urllib.parse import urlencode

from urllib3 import encode_multipart_formdata
from urllib3.exceptions import HTTPError

from agent_portal import PortalError
from agent_portal.upstream import unreachable

from .settings import NotebookSettings


class NotebookClient:
    """Open Notebook at ``settings.url``: one connection pool, ``Authorization: Bearer <password>``."""

    def __init__(self, portal, settings: NotebookSettings):
        self.settings = settings
        self.pool = portal.pool.connection_from_url(settings.url)
        prefix = settings.url.split("://", 1)[1].partition("/")[2].strip("/")
        self.prefix = "/" + prefix if prefix else ""
        self.headers = {"Accept": "application/json"}
        if settings.password:
            self.headers["Authorization"] = f"Bearer {settings.password}"

    def call(self, method: str, path: str, body=None, params=None, fields=None, timeout=None,
             request_id=None):
        """Send one request and return its JSON answer (a 2xx answer that is not JSON is 502).

        ``body`` goes as JSON, ``fields`` as multipart form data. The server refusing the
        portal's password is 502 ``upstream_auth_failed`` (never the caller's 401); its 404 is
        the caller's 404; any other 4xx keeps its status with the server's reason; 5xx is 502.
        """
        headers = dict(self.headers)
        if request_id:
            headers["X-Request-ID"] = request_id
        payload = None
        if fields is not None:
            payload, headers["Content-Type"] = encode_multipart_formdata(fields)
        elif body is not None:
            payload, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        url = self.prefix + path + ("?" + urlencode(params) if params else "")
        try:
            response = self.pool.urlopen(method, url, body=payload, headers=headers,
                                         timeout=timeout or self.settings.timeout, retries=False,
                                         redirect=False, assert_same_host=False)
        except HTTPError as exc:
            raise unreachable(exc, "Open Notebook") from exc
        try:
            data = json.loads(response.data) if response.data else None
        except ValueError:
            data = ValueError
        detail = data.get("detail") if isinstance(data, dict) else None
        if isinstance(detail, list):  # FastAPI's validation errors
            detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
        if response.status == 401:
            raise PortalError(f"Open Notebook refused the portal's password: {detail or 'HTTP 401'}.", status=502,
                              code="upstream_auth_failed", type="upstream_error")
        if response.status == 404:
            raise PortalError(str(detail or "Not found in Open Notebook."), status=404, code="not_found")
        if response.status >= 500:
            raise PortalError(f"Open Notebook failed: {detail or 'HTTP %d' % response.status}.", status=502,
                              code="upstream_error", type="upstream_error")
        if response.status >= 400:
            raise PortalError(str(detail or f"Open Notebook answered HTTP {response.status}."),
                              status=response.status, code="upstream_client_error")
        if data is ValueError:
            raise PortalError("Open Notebook answered with something other than JSON.", status=502,
                              code="upstream_malformed", type="upstream_error")
        return data
