"""Helicone: chat optionally through its gateway, usage from its REST API, health.

Through the gateway every call carries ``Helicone-Auth``, ``Helicone-User-Id`` (the caller),
``Helicone-Request-Id`` (the portal's request id) and ``Helicone-Property-*`` from config.
"""
from __future__ import annotations

from agent_portal import ChatTarget, HealthCheck, ModelInfo, UsageProvider, hookimpl
from agent_portal.config import strict_object
from agent_portal.observe import http_check

from .gateway import HeliconeGateway, helicone_request_id  # noqa: F401 - helicone_request_id: public
from .usage import usage_from_helicone

NAME = "helicone"


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        "api_key": {"type": "string", "minLength": 1},
        "api_url": {"type": "string", "pattern": "^https?://", "default": "https://api.helicone.ai"},
        "gateway_url": {"type": ["string", "null"], "pattern": "^https?://"},
        "gateway_auth": {"enum": ["helicone-auth", "bearer"], "default": "helicone-auth"},
        "upstream_api_key": {"type": ["string", "null"]},
        "models": {"type": "array", "items": {"type": "string"}},
        "properties": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 10},
        "required": {"type": "boolean", "default": False},
    }, required=["api_key"])}


@hookimpl
def portal_startup(portal):
    settings = portal.plugin_config(NAME)
    portal.extensions[NAME] = HeliconeGateway(portal, settings) if settings.get("gateway_url") else None


@hookimpl
def portal_chat_backend(portal, model):
    gateway = portal.extensions[NAME]
    if gateway is not None and model in gateway.model_ids():
        return ChatTarget(model=model, backend=gateway, upstream_model=model)
    return None


@hookimpl
def portal_backends(portal):
    gateway = portal.extensions[NAME]
    return [gateway] if gateway is not None else []


@hookimpl
def portal_models(portal, actor):
    gateway = portal.extensions[NAME]
    return [ModelInfo(id=m, backend=NAME) for m in gateway.model_ids()] if gateway is not None else []


@hookimpl
def portal_usage_providers(portal):
    return [UsageProvider(NAME, lambda portal, query: usage_from_helicone(portal, query, portal.plugin_config(NAME)))]


@hookimpl
def portal_health_checks(portal):
    settings = portal.plugin_config(NAME)

    def judge(body):
        status = body.get("status", "")
        return {"status": "up" if str(status).startswith("healthy") else "degraded", "detail": status}

    check = http_check(settings["api_url"].rstrip("/") + "/healthcheck", judge)
    return [HealthCheck(NAME, check, timeout=3.0, required=settings["required"])]
