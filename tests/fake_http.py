"""What the local stand-in servers share: a threaded HTTP server on 127.0.0.1 that stays quiet
when a client leaves early (the tests make clients leave early on purpose)."""
from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: thousands of streams opened at once (the benchmark)
    # would have the kernel drop their handshakes and stall their requests, as no real server does
    request_queue_size = 4096

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def serve(handler) -> tuple[QuietServer, str]:
    """Start ``handler`` on a free loopback port in the background; return the server and its URL."""
    server = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler that answers with ``reply``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, body, content_type: str = "application/json") -> None:
        """Send ``body`` (bytes as they are, anything else as JSON) with its length."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
