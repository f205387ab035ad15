"""Local stand-ins for Langfuse (REST and its OTLP/HTTP receiver) and Helicone's REST API.

Shapes follow ../shared/CONTRACTS.md, failures included: the deprecated daily metrics endpoint,
numbers sent as strings, 404 for v2 metrics on older servers, and modes that answer slowly or with
garbage.
"""
from __future__ import annotations

import gzip
import json
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from fake_http import serve


def _attr_value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class _Base:
    def __init__(self):
        self.mode = "ok"  # ok | slow | garbage
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body, content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                fake.requests.append((method, self.path, dict(self.headers), body))
                if fake.mode == "slow":
                    time.sleep(10)
                if fake.mode == "garbage":
                    return self.reply(200, b"\x00<html>not what you think", "text/html")
                fake.route(self, method, urlsplit(self.path), body)

            def do_GET(self):
                self.handle_any("GET")

            def do_POST(self):
                self.handle_any("POST")

        self.server, self.url = serve(Handler)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class FakeLangfuse(_Base):
    """``/api/public/health``, ``/api/public/v2/metrics``, ``/api/public/metrics/daily`` and OTLP."""

    def __init__(self, public_key="pk-lf-test", secret_key="sk-lf-test", v2=True):
        self.auth = "Basic " + __import__("base64").b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self.v2 = v2
        self.spans = []
        self.metrics_queries = []
        super().__init__()

    def generations(self):
        """Return each received span as ``{name, attributes}``."""
        return list(self.spans)

    def route(self, handler, method, url, body):
        if url.path == "/api/public/health":
            return handler.reply(200, {"status": "OK", "version": "4.16.0"})
        if handler.headers.get("Authorization") != self.auth:
            return handler.reply(401, {"message": "Invalid credentials"})
        if url.path == "/api/public/otel/v1/traces" and method == "POST":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append({"name": span.name, "start": span.start_time_unix_nano,
                                           "end": span.end_time_unix_nano,
                                           "attributes": {a.key: _attr_value(a.value) for a in span.attributes}})
            return handler.reply(200, b"", "application/x-protobuf")
        if url.path == "/api/public/v2/metrics":
            if not self.v2:
                return handler.reply(404, {"message": "Not found"})
            query = json.loads(parse_qs(url.query)["query"][0])
            self.metrics_queries.append(query)
            dims = [d["field"] for d in query.get("dimensions", [])]
            if "userId" in dims:
                return handler.reply(400, {"message": "userId cannot be used as a dimension"})
            rows = [{"providedModelName": "gpt-a", "sum_totalCost": "0.25", "sum_inputTokens": "100",
                     "sum_outputTokens": "40", "count_count": "3"},
                    {"providedModelName": "gpt-b", "sum_totalCost": 0.5, "sum_inputTokens": 10,
                     "sum_outputTokens": 4, "count_count": 1}]
            if "timeDimension" in query:
                for row in rows:
                    row["time_dimension"] = "2026-11-02T00:00:00.000Z"
            if not dims:
                rows = [{"sum_totalCost": "0.75", "sum_inputTokens": "110", "sum_outputTokens": "44",
                         "count_count": "4", **({"time_dimension": "2026-11-02T00:00:00.000Z"}
                                                if "timeDimension" in query else {})}]
            return handler.reply(200, {"data": rows})
        if url.path == "/api/public/metrics/daily":
            page = int(parse_qs(url.query).get("page", ["1"])[0])
            days = {1: {"date": "2026-11-02", "countTraces": 2, "countObservations": 3, "totalCost": 0.3,
                        "usage": [{"model": "gpt-a", "inputUsage": 100, "outputUsage": 40, "totalUsage": 140,
                                   "countObservations": 3, "countTraces": 2, "totalCost": "0.25"}]},
                    2: {"date": "2026-11-03", "countTraces": 1, "countObservations": 1, "totalCost": 0.5,
                        "usage": [{"model": "gpt-b", "inputUsage": "10", "outputUsage": "4", "totalUsage": 14,
                                   "countObservations": 1, "countTraces": 1, "totalCost": 0.5}]}}
            return handler.reply(200, {"data": [days[page]],
                                       "meta": {"page": page, "limit": 1, "totalItems": 2, "totalPages": 2}})
        return handler.reply(404, {"message": "Not found"})


class FakeHelicone(_Base):
    """``/healthcheck``, ``/v1/request/query`` and ``/v1/user/metrics/query``."""

    def __init__(self, api_key="hel-test-key"):
        self.api_key = api_key
        self.rows = [
            {"request_id": "r1", "request_created_at": "2026-11-02T10:00:00Z", "request_user_id": "alice",
             "request_model": "gpt-a", "response_status": 200, "provider": "OPENAI", "delay_ms": 100,
             "time_to_first_token": 20, "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
             "cost": 0.01},
            {"request_id": "r2", "request_created_at": "2026-11-02T11:00:00Z", "request_user_id": "alice",
             "request_model": "gpt-a", "response_status": 500, "provider": "OPENAI", "delay_ms": 300,
             "time_to_first_token": None, "prompt_tokens": 10, "completion_tokens": 0, "total_tokens": 10,
             "cost": 0.0},
            {"request_id": "r3", "request_created_at": "2026-11-03T09:00:00Z", "request_user_id": "bob",
             "request_model": "gpt-b", "response_status": 200, "provider": "OPENAI", "delay_ms": 200,
             "time_to_first_token": 30, "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
             "cost": 0.02},
        ]
        super().__init__()

    def route(self, handler, method, url, body):
        if url.path == "/healthcheck":
            return handler.reply(200, {"status": "healthy :)"})
        if handler.headers.get("authorization") != f"Bearer {self.api_key}":
            return handler.reply(401, {"data": None, "error": "unauthorized"})
        query = json.loads(body or b"{}")
        user = None
        if isinstance(query.get("filter"), dict):
            user = query["filter"]["request_response_rmt"]["user_id"]["equals"]
        rows = [r for r in self.rows if user is None or r["request_user_id"] == user]
        if url.path == "/v1/request/query":
            rows = sorted(rows, key=lambda r: r["request_created_at"], reverse=True)
            return handler.reply(200, {"data": rows[query["offset"]:query["offset"] + query["limit"]], "error": None})
        if url.path == "/v1/user/metrics/query":
            users = {}
            for r in rows:
                u = users.setdefault(r["request_user_id"], {"user_id": r["request_user_id"], "total_requests": 0,
                                                            "total_prompt_tokens": 0, "total_completion_tokens": 0,
                                                            "cost": 0.0, "first_active": r["request_created_at"],
                                                            "last_active": r["request_created_at"]})
                u["total_requests"] += 1
                u["total_prompt_tokens"] += r["prompt_tokens"]
                u["total_completion_tokens"] += r["completion_tokens"]
                u["cost"] += r["cost"]
            return handler.reply(200, {"data": {"users": list(users.values()), "count": len(users)}, "error": None})
        return handler.reply(404, {"data": None, "error": "not found"})
