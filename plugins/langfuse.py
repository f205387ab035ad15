"""Langfuse: a trace with a generation per chat call, usage from its metrics API, health.

Traces go through the ``langfuse`` 5.x SDK, which exports OTLP from its own background thread;
the portal hands it records off the request path and never flushes on it. The SDK gets a tracer
provider of its own, so it never replaces the portal's (or anyone's) global OpenTelemetry setup.
"""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone

from agent_portal import HealthCheck, UsageProvider, hookimpl
from agent_portal.usage import empty_row

log = logging.getLogger("agent_portal.langfuse")
NAME = "langfuse"
_DEFAULT_METRICS = [{"measure": "totalCost", "aggregation": "sum"},
                    {"measure": "inputTokens", "aggregation": "sum"},
                    {"measure": "outputTokens", "aggregation": "sum"},
                    {"measure": "count", "aggregation": "count"}]


@hookimpl
def portal_config_schema():
    return {NAME: {
        "type": "object",
        "additionalProperties": False,
        "required": ["public_key", "secret_key", "base_url"],
        "properties": {
            "public_key": {"type": "string", "minLength": 1},
            "secret_key": {"type": "string", "minLength": 1},
            "base_url": {"type": "string", "pattern": "^https?://"},
            "log_payloads": {"type": "boolean", "default": True},
            "flush_interval_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 2},
            "flush_at": {"type": "integer", "minimum": 1, "default": 100},
            "timeout_seconds": {"type": "integer", "minimum": 1, "default": 5},
            "shutdown_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
            "environment": {"type": ["string", "null"]},
            "required": {"type": "boolean", "default": False},
        },
    }}


class LangfuseTracer:
    """The SDK client with a tracer provider of its own, and how one record becomes a trace."""

    def __init__(self, settings: dict):
        from langfuse import Langfuse
        from opentelemetry.sdk.trace import TracerProvider

        self.settings = settings
        self.provider = TracerProvider()
        self.client = Langfuse(public_key=settings["public_key"], secret_key=settings["secret_key"],
                               base_url=settings["base_url"], timeout=settings["timeout_seconds"],
                               flush_interval=settings["flush_interval_seconds"], flush_at=settings["flush_at"],
                               environment=settings.get("environment"), tracer_provider=self.provider,
                               tracing_enabled=True)
        self.sent = 0

    def trace(self, record) -> None:
        """Record one chat call as a trace holding one generation (never raises into the portal)."""
        from langfuse import propagate_attributes

        payloads = self.settings["log_payloads"]
        begun = datetime.now(timezone.utc)
        metadata = {"request_id": record.request_id, "backend": record.backend, "outcome": record.outcome,
                    "stream": record.stream, "partial": record.partial,
                    "ttft_ms": None if record.ttft is None else round(record.ttft * 1000, 3),
                    "duration_ms": round(record.duration * 1000, 3),
                    "upstream_call_id": record.upstream_call_id}
        tags = ["agent-portal", f"role:{record.actor_role}", f"outcome:{record.outcome}"]
        with propagate_attributes(user_id=record.actor_id, session_id=record.session_id, tags=tags,
                                  metadata={"request_id": record.request_id}, trace_name="chat"):
            with self.client.start_as_current_observation(
                    name="chat", as_type="generation", model=record.upstream_model or record.model,
                    input=record.messages if payloads else None, metadata=metadata,
                    completion_start_time=begun + timedelta(seconds=record.ttft) if record.ttft else None,
                    end_on_exit=False) as generation:
                generation.update(
                    output=record.output if payloads else None,
                    usage_details={"input": record.prompt_tokens, "output": record.completion_tokens},
                    cost_details={"total": record.cost},
                    level="DEFAULT" if record.outcome == "ok" else "ERROR",
                    status_message=record.error)
                # the SDK starts the span now: keep the call's real duration
                end = begun + timedelta(seconds=record.duration)
                generation.end(end_time=int(end.timestamp() * 1e9))
        self.sent += 1

    def shutdown(self, seconds: float) -> None:
        """Flush and stop the exporter, giving up after ``seconds``."""
        worker = threading.Thread(target=self.client.shutdown, daemon=True)
        worker.start()
        worker.join(seconds)
        if worker.is_alive():
            log.warning("langfuse: traces still queued after %ss at shutdown were dropped", seconds)
        self._forget_sdk_resources()

    def _forget_sdk_resources(self) -> None:
        # The SDK keeps one exporter per public key for the whole process and keeps it after
        # shutdown; a later app with the same key (tests build many) would get a stopped one.
        try:
            from langfuse._client.resource_manager import LangfuseResourceManager

            with LangfuseResourceManager._lock:
                LangfuseResourceManager._instances.pop(self.settings["public_key"], None)
        except (ImportError, AttributeError):
            pass


# --- reading usage back ----------------------------------------------------------------------


def _number(value, kind=float):
    try:
        return kind(float(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def metrics_query(query) -> dict:
    """Return the v2 metrics query for a portal usage query (grouping by user is done by filter)."""
    dimensions = [{"field": "providedModelName"}] if "model" in query.group_by else []
    filters = []
    if query.user:
        filters.append({"column": "userId", "operator": "=", "value": query.user, "type": "string"})
    if query.model:
        filters.append({"column": "providedModelName", "operator": "=", "value": query.model, "type": "string"})
    body = {"view": "observations", "dimensions": dimensions, "metrics": _DEFAULT_METRICS, "filters": filters,
            "fromTimestamp": query.start.isoformat().replace("+00:00", "Z"),
            "toTimestamp": query.end.isoformat().replace("+00:00", "Z")}
    if "day" in query.group_by or "hour" in query.group_by:
        body["timeDimension"] = {"granularity": "day" if "day" in query.group_by else "hour"}
    return body


def _time_key(value: str, hourly: bool) -> str:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:00:00Z" if hourly else "%Y-%m-%d")


def usage_from_langfuse(portal, query) -> list[dict]:
    """Return usage rows from Langfuse's metrics API, falling back to the daily metrics API."""
    settings = portal.plugin_config(NAME)
    if "user" in query.group_by and not query.user:
        raise ValueError("Langfuse can filter by user but not group by user; pass user=")
    if "backend" in query.group_by:
        raise ValueError("Langfuse does not know the portal's backends; group by model, day or hour")
    base = settings["base_url"].rstrip("/")
    auth = (settings["public_key"], settings["secret_key"])
    response = portal.http.get(base + "/api/public/v2/metrics", auth=auth, timeout=settings["timeout_seconds"],
                               params={"query": json.dumps(metrics_query(query))})
    if response.status_code == 404:
        return _usage_from_daily(portal, query, base, auth, settings["timeout_seconds"])
    response.raise_for_status()
    rows = []
    for item in response.json().get("data") or []:
        row = {}
        if "user" in query.group_by:
            row["user"] = query.user
        if "model" in query.group_by:
            row["model"] = item.get("providedModelName")
        if "day" in query.group_by or "hour" in query.group_by:
            row["hour" if "hour" in query.group_by else "day"] = _time_key(item.get("time_dimension"),
                                                                           "hour" in query.group_by)
        row = {**empty_row(row), "requests": _number(item.get("count_count"), int),
               "prompt_tokens": _number(item.get("sum_inputTokens"), int),
               "completion_tokens": _number(item.get("sum_outputTokens"), int),
               "cost": _number(item.get("sum_totalCost"))}
        rows.append(row)
    return rows


def _usage_from_daily(portal, query, base, auth, timeout) -> list[dict]:
    if "hour" in query.group_by:
        raise ValueError("Langfuse's daily metrics cannot group by hour")
    params = {"fromTimestamp": query.start.isoformat().replace("+00:00", "Z"),
              "toTimestamp": query.end.isoformat().replace("+00:00", "Z"), "limit": 100, "page": 1}
    if query.user:
        params["userId"] = query.user
    buckets: dict[tuple, dict] = {}
    while True:
        response = portal.http.get(base + "/api/public/metrics/daily", auth=auth, timeout=timeout, params=params)
        response.raise_for_status()
        body = response.json()
        for day in body.get("data") or []:
            for usage in day.get("usage") or []:
                if query.model and usage.get("model") != query.model:
                    continue
                key = {}
                if "user" in query.group_by:
                    key["user"] = query.user
                if "model" in query.group_by:
                    key["model"] = usage.get("model")
                if "day" in query.group_by:
                    key["day"] = str(day.get("date"))[:10]
                bucket = buckets.setdefault(tuple(key.items()), {**empty_row(key), "requests": 0,
                                                                  "prompt_tokens": 0, "completion_tokens": 0,
                                                                  "cost": 0.0})
                bucket["requests"] += _number(usage.get("countObservations"), int)
                bucket["prompt_tokens"] += _number(usage.get("inputUsage"), int)
                bucket["completion_tokens"] += _number(usage.get("outputUsage"), int)
                bucket["cost"] += _number(usage.get("totalCost"))
        meta = body.get("meta") or {}
        if params["page"] >= _number(meta.get("totalPages"), int) or params["page"] >= 50:
            break
        params["page"] += 1
    return [buckets[k] for k in sorted(buckets, key=lambda k: tuple(str(v) for _, v in k))]


# --- hooks -------------------------------------------------------------------------------------


@hookimpl
def portal_startup(portal):
    settings = portal.plugin_config(NAME)
    portal.extensions[NAME] = LangfuseTracer(settings)
    portal.wants_payloads = portal.wants_payloads or settings["log_payloads"]


@hookimpl
def portal_chat_completed(portal, record):
    portal.extensions[NAME].trace(record)


@hookimpl
def portal_shutdown(portal):
    portal.extensions[NAME].shutdown(portal.plugin_config(NAME)["shutdown_seconds"])


@hookimpl
def portal_usage_providers(portal):
    return [UsageProvider(NAME, usage_from_langfuse)]


@hookimpl
def portal_health_checks(portal):
    settings = portal.plugin_config(NAME)

    def check(portal):
        response = portal.http.get(settings["base_url"].rstrip("/") + "/api/public/health", timeout=3)
        if response.status_code != 200:
            return {"status": "down", "detail": f"HTTP {response.status_code}"}
        body = response.json()
        return {"status": "up" if body.get("status") == "OK" else "degraded", "version": body.get("version"),
                "traces_sent": portal.extensions[NAME].sent}

    return [HealthCheck(NAME, check, timeout=3.0, required=settings["required"])]
