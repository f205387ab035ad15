"""Langfuse: a trace with a generation per chat call, usage from its metrics API, health.

Traces go through the ``langfuse`` 5.x SDK, which exports OTLP from its own background thread;
the portal hands it records off the request path and never flushes on it. The SDK gets a tracer
provider of its own, so it never replaces the portal's (or anyone's) global OpenTelemetry setup.
"""
from __future__ import annotations

from agent_portal import HealthCheck, UsageProvider, hookimpl
from agent_portal.config import strict_object
from agent_portal.observe import http_check

from .tracer import LangfuseTracer
from .usage import usage_from_langfuse

NAME = "langfuse"


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
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
    }, required=["public_key", "secret_key", "base_url"])}


@hookimpl
def portal_startup(portal):
    settings = portal.plugin_config(NAME)
    portal.extensions[NAME] = LangfuseTracer(settings)


@hookimpl
def portal_chat_completed(portal, record):
    portal.extensions[NAME].trace(record)


@hookimpl
def portal_shutdown(portal):
    portal.extensions[NAME].shutdown(portal.plugin_config(NAME)["shutdown_seconds"])


@hookimpl
def portal_wants_payloads(portal):
    return portal.plugin_config(NAME)["log_payloads"]


@hookimpl
def portal_usage_providers(portal):
    return [UsageProvider(NAME, lambda portal, query: usage_from_langfuse(portal, query, portal.plugin_config(NAME)))]


@hookimpl
def portal_health_checks(portal):
    settings = portal.plugin_config(NAME)

    def judge(body):
        return {"status": "up" if body.get("status") == "OK" else "degraded", "version": body.get("version"),
                "traces_sent": portal.extensions[NAME].sent}

    check = http_check(settings["base_url"].rstrip("/") + "/api/public/health", judge)
    return [HealthCheck(NAME, check, timeout=3.0, required=settings["required"])]
