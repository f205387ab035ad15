"""Local stand-ins for Kong's Admin API and for an admin UI that refuses to be framed.

Kong (CONTRACTS.md): ``GET /`` node info, ``GET /status``, entity lists ``{"data", "next"}`` with
``?size=`` and ``?offset=``. The UI sends ``X-Frame-Options``, a CSP with ``frame-ancestors``,
redirects (absolute and relative) and cookies with Path and Domain, and echoes what it received.
"""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from fake_http import serve


class _Server:
    def __init__(self, handler):
        self.server, self.url = serve(handler)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class FakeKongAdmin(_Server):
    def __init__(self, database_reachable=True):
        self.services = [{"id": f"svc-{i}", "name": f"service-{i}"} for i in range(5)]
        self.writes = []
        self.paths = []
        fake = self

        class Handler(_Handler):
            def do_GET(self):
                parts = urlsplit(self.path)
                fake.paths.append(self.path)
                query = parse_qs(parts.query)
                if parts.path == "/":
                    return self.send(200, {"version": "3.9.1", "hostname": "kong-1", "node_id": "n-1",
                                           "plugins": {"available_on_server": {"jwt": {}}}})
                if parts.path == "/status":
                    return self.send(200, {"database": {"reachable": database_reachable},
                                           "server": {"total_requests": 42, "connections_active": 3},
                                           "memory": {}})
                if parts.path == "/services":
                    size = int(query.get("size", ["2"])[0])
                    offset = int(query.get("offset", ["0"])[0])
                    page = fake.services[offset:offset + size]
                    more = offset + size < len(fake.services)
                    return self.send(200, {"data": page, "next": f"/services?offset={offset + size}&size={size}"
                                           if more else None})
                return self.send(404, {"message": "Not found"})

            def do_POST(self):
                fake.writes.append((self.path, self.body()))
                self.send(201, {"id": "new"})

            do_DELETE = do_POST
            do_PATCH = do_POST

        super().__init__(Handler)


class FakeAdminUI(_Server):
    def __init__(self):
        self.seen = []
        self.dropped = set()  # /drop-once/<n>: the first request of each is dropped unanswered
        fake = self

        class Handler(_Handler):
            def do_GET(self):
                fake.seen.append((self.path, dict(self.headers)))
                path = urlsplit(self.path).path
                if path == "/":
                    return self.send(200, b"<html>admin ui</html>", "text/html", [
                        ("X-Frame-Options", "SAMEORIGIN"),
                        ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
                        ("Set-Cookie", "sid=abc; Path=/; Domain=ui.internal; HttpOnly"),
                        ("Set-Cookie", "pref=dark; Path=/settings")])
                if path == "/login":
                    return self.send(302, b"", "text/plain", [("Location", f"{fake.url}/dashboard?x=1")])
                if path == "/relative":
                    return self.send(302, b"", "text/plain", [("Location", "/other")])
                if path == "/elsewhere":
                    return self.send(302, b"", "text/plain", [("Location", "https://idp.example.com/auth")])
                if path == "/echo":
                    return self.send(200, {"path": self.path, "headers": dict(self.headers)})
                if path == "/big":
                    return self.send(200, b"x" * 300_000, "application/octet-stream")
                if path.startswith("/drop-once/"):
                    return self.drop_once(path) or self.send(200, b"second time", "text/plain")
                return self.send(404, b"not here", "text/plain")

            def drop_once(self, path):
                """Close the connection without answering, the first time (a keep-alive the
                server timed out just as the request was sent); True when it did."""
                if path in fake.dropped:
                    return False
                fake.dropped.add(path)
                self.close_connection = True
                self.connection.shutdown(2)
                return True

            def do_POST(self):
                data = self.body()
                fake.seen.append((self.path, dict(self.headers)))
                if urlsplit(self.path).path.startswith("/drop-once/") and self.drop_once(urlsplit(self.path).path):
                    return
                self.send(200, {"received": len(data)})

        super().__init__(Handler)


class FakeNextApp(_Server):
    """A page shaped like a Next.js admin UI (Langfuse's, Helicone's): a font preloaded, a
    stylesheet naming the font, a script that loads another chunk at run time, all under
    ``base_path`` (``NEXT_PUBLIC_BASE_PATH`` at build time; empty for a root-only build). The
    app answers only under its base path, as Next.js does."""

    def __init__(self, base_path: str = "", page: str = "auth/sign-in"):
        self.base_path, self.page = base_path, page
        base = base_path
        files = {
            f"{base}/_next/static/media/inter.woff2": (b"wOF2", "font/woff2"),
            f"{base}/_next/static/css/app.css": (
                f"@font-face{{font-family:Inter;src:url({base}/_next/static/media/inter.woff2) format('woff2')}}"
                "body{font-family:Inter}".encode(), "text/css"),
            f"{base}/_next/static/chunks/main.js": (
                f"var s=document.createElement('script');s.src='{base}/_next/static/chunks/late.js';"
                "document.head.appendChild(s);".encode(), "application/javascript"),
            f"{base}/_next/static/chunks/late.js": (
                b"document.getElementById('app').textContent='Sign in';", "application/javascript"),
            f"{base}/{page}": ((
                '<!DOCTYPE html><html><head><meta charSet="utf-8"/>'
                f'<link rel="preload" href="{base}/_next/static/media/inter.woff2" as="font" crossorigin=""/>'
                f'<link rel="stylesheet" href="{base}/_next/static/css/app.css" data-precedence="next"/>'
                f'<script src="{base}/_next/static/chunks/main.js" async=""></script>'
                '</head><body><p>unclosed <div id="app"></div></body></html>').encode(), "text/html; charset=utf-8"),
        }
        self.seen = []
        fake = self

        class Handler(_Handler):
            def do_GET(self):
                path = urlsplit(self.path).path
                fake.seen.append(path)
                if path.rstrip("/") == base:
                    return self.send(307, b"", "text/plain", [("Location", f"{base}/{fake.page}")])
                if path in files:
                    body, kind = files[path]
                    return self.send(200, body, kind)
                return self.send(404, b"This page could not be found.", "text/html")

        super().__init__(Handler)
