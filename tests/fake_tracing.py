"""Local stand-ins for Langfuse (REST and its OTLP/HTTP receiver) and Helicone's REST API.

Shapes follow ../shared/CONTRACTS.md, failures included: the deprecated daily metrics endpoint,
numbers sent as strings, 404 for v2 metrics on older servers, and modes that answer slowly or with
garbage.
"""
from __future__ import annotations

import gzip
import json
import time
from urllib.parse import parse_qs, urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from fake_http import JSONHandler, serve


def _attr_value(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_attr_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


class _Base:
    def __init__(self):
        self.mode = "ok"  # ok | slow | garbage
        self.requests = []
        fake = self

        class Handler(JSONHandler):
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


def _observation(at: str, model: str, user: str, cost, inputs, outputs, tags=()) -> dict:
    return {"time": at, "model": model, "user": user, "cost": cost, "input": inputs, "output": outputs,
            "tags": list(tags)}


SEEDED = [_observation("2026-11-02T09:00:00Z", "gpt-a", "alice", "0.05", "30", "10"),
          _observation("2026-11-02T10:00:00Z", "gpt-a", "alice", "0.1", "40", "20"),
          _observation("2026-11-02T11:30:00Z", "gpt-a", "alice", "0.1", "30", "10"),
          _observation("2026-11-02T12:00:00Z", "gpt-b", "alice", 0.5, 10, 4)]
MEASURES = {"totalCost": "cost", "inputTokens": "input", "outputTokens": "output"}
MAX_ROW_LIMIT = 1000


class FakeLangfuse(_Base):
    """``/api/public/health``, ``/api/public/v2/metrics``, ``/api/public/metrics/daily`` and OTLP.

    The v2 metrics API answers as the real one does (CONTRACTS.md, corrected 2026-11-26): it
    aggregates ``observations`` by its dimensions and time buckets, filters by ``userId``,
    ``providedModelName`` and ``tags``, returns at most 100 rows unless ``config.row_limit`` (at
    most 1000) says otherwise, oldest first, and groups by ``userId`` only with a row limit, a
    descending ``orderBy`` on a measure and no time dimension.
    """

    def __init__(self, public_key="pk-lf-test-7c1f9a2e4b", secret_key="sk-lf-test-5d8e0b3a6c", v2=True, observations=None):
        self.auth = "Basic " + __import__("base64").b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self.v2 = v2
        self.spans = []
        self.metrics_queries = []
        self.observations = list(SEEDED if observations is None else observations)
        super().__init__()

    def generations(self):
        """Return each received span as ``{name, attributes}``."""
        return list(self.spans)

    def metrics(self, query: dict):
        """Return (status, body) for one v2 metrics query."""
        dims = [d["field"] for d in query.get("dimensions", [])]
        config = query.get("config") or {}
        limit = config.get("row_limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_ROW_LIMIT:
            return 400, {"message": "row_limit must be between 1 and 1000"}
        if "userId" in dims:
            order = query.get("orderBy") or []
            if "row_limit" not in config or "timeDimension" in query or not order or \
                    order[0].get("direction") != "desc" or not str(order[0].get("field")).startswith(("sum_", "count_")):
                return 400, {"message": "userId is a high cardinality dimension: it needs config.row_limit, "
                                        "an orderBy on a measure, descending, and no timeDimension"}
        if set(dims) - {"providedModelName", "userId"}:
            return 400, {"message": f"unknown dimension in {dims}"}
        start, end = query["fromTimestamp"], query["toTimestamp"]
        selected = [o for o in self.observations if _iso(start) <= _iso(o["time"]) < _iso(end)]
        for f in query.get("filters", []):
            column, value = f["column"], f["value"]
            if column == "userId":
                selected = [o for o in selected if o["user"] == value]
            elif column == "providedModelName":
                selected = [o for o in selected if o["model"] == value]
            elif column == "tags" and f["operator"] == "any of" and f.get("type") == "arrayOptions":
                selected = [o for o in selected if set(o["tags"]) & set(value)]
            else:
                return 400, {"message": f"unsupported filter {f}"}
        granularity = (query.get("timeDimension") or {}).get("granularity")
        groups: dict = {}
        for o in selected:
            key = [("providedModelName", o["model"]) if d == "providedModelName" else ("userId", o["user"])
                   for d in dims]
            if granularity:
                key.append(("time_dimension", _bucket(o["time"], granularity)))
            group = groups.setdefault(tuple(key), {"sum_totalCost": 0.0, "sum_inputTokens": 0,
                                                   "sum_outputTokens": 0, "count_count": 0})
            group["sum_totalCost"] += float(o["cost"])
            group["sum_inputTokens"] += int(o["input"])
            group["sum_outputTokens"] += int(o["output"])
            group["count_count"] += 1
        rows = [{**dict(key), **{k: str(v) for k, v in values.items()}} for key, values in groups.items()]
        rows.sort(key=lambda r: (r.get("time_dimension", ""), r.get("providedModelName", ""), r.get("userId", "")))
        for order in reversed(query.get("orderBy") or []):
            rows.sort(key=lambda r: float(r.get(order["field"], 0)), reverse=order.get("direction") == "desc")
        return 200, {"data": rows[:limit]}

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
            status, answer = self.metrics(query)
            return handler.reply(status, answer)
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


def _iso(value: str):
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _bucket(value: str, granularity: str) -> str:
    moment = _iso(value)
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if granularity == "day":
        moment = moment.replace(hour=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeHelicone(_Base):
    """``/healthcheck``, ``/v1/request/query``, ``/v1/request/query-clickhouse`` and
    ``/v1/user/metrics/query``, as Helicone's own source has them (CONTRACTS.md, corrected
    2026-11-26): the ClickHouse query takes ``request_response_rmt`` filters (``and`` trees
    included) and its rows carry ``cost``; the PostgreSQL one fails on such a filter (500), its
    rows carry ``costUSD``, and it refuses offsets above 10,000."""

    def __init__(self, api_key="hel-test-key-9e4b7a1c2d", rows=None):
        self.api_key = api_key
        self.rows = rows if rows is not None else [
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

    def _matches(self, node, row) -> bool:
        if node == "all":
            return True
        if "left" in node:
            left, right = self._matches(node["left"], row), self._matches(node["right"], row)
            return left and right if node["operator"] == "and" else left or right
        fields = {"user_id": "request_user_id", "model": "request_model"}
        (field, condition), = node["request_response_rmt"].items()
        return row[fields[field]] == condition["equals"]

    def route(self, handler, method, url, body):
        if url.path == "/healthcheck":
            return handler.reply(200, {"status": "healthy :)"})
        if handler.headers.get("authorization") != f"Bearer {self.api_key}":
            return handler.reply(401, {"data": None, "error": "unauthorized"})
        query = json.loads(body or b"{}")
        node = query.get("filter", "all")
        if url.path == "/v1/request/query":
            if node != "all" and "request" not in node:
                return handler.reply(500, {"data": None, "error": "relation request_response_rmt does not exist"})
            if query.get("offset", 0) > 10_000:
                return handler.reply(500, {"data": None, "error": "offset must be at most 10000"})
            rows = sorted(self.rows, key=lambda r: r["request_created_at"], reverse=True)
            rows = [{**{k: v for k, v in r.items() if k != "cost"}, "costUSD": r["cost"]} for r in rows]
            return handler.reply(200, {"data": rows[query["offset"]:query["offset"] + query["limit"]], "error": None})
        if url.path == "/v1/request/query-clickhouse":
            rows = sorted((r for r in self.rows if self._matches(node, r)),
                          key=lambda r: r["request_created_at"], reverse=True)
            return handler.reply(200, {"data": rows[query["offset"]:query["offset"] + query["limit"]], "error": None})
        if url.path == "/v1/user/metrics/query":
            rows = [r for r in self.rows if self._matches(node, r)]
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
