"""Helicone: chat optionally through its gateway, usage from its REST API, health.

Through the gateway every call carries ``Helicone-Auth``, ``Helicone-User-Id`` (the caller),
``Helicone-Request-Id`` (the portal's request id) and ``Helicone-Property-*`` from config.
"""
from __future__ import annotations

from agent_portal import ChatTarget, HealthCheck, ModelInfo, UsageProvider, hookimpl
from agent_portal.config import strict_object
from agent_portal.observe import http_check

from .gateway import HeliconeGateway
from .usage import usage_from_helicone

NAME = "helicone"


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        # empty until an admin creates one in Helicone's own UI (a self-hosted Helicone's first
        # start): the plugin then only reports that it waits for it
        "api_key": {"type": ["string", "null"]},
        "api_url": {"type": "string", "pattern": "^https?://", "default": "https://api.helicone.ai"},
        "gateway_url": {"type": ["string", "null"], "pattern": "^https?://"},
        "gateway_auth": {"enum": ["helicone-auth", "bearer"], "default": "helicone-auth"},
        "upstream_api_key": {"type": ["string", "null"]},
        "models": {"type": "array", "items": {"type": "string"}},
        "properties": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 10},
        "required": {"type": "boolean", "default": False},
    })}


def _has_key(settings: dict) -> bool:
    return bool((settings.get("api_key") or "").strip())


NO_KEY = "no Helicone API key yet: create one in Helicone's UI and set plugins.helicone.api_key"


@hookimpl
def portal_startup(portal):
    settings = portal.plugin_config(NAME)
    ready = settings.get("gateway_url") and _has_key(settings)
    portal.extensions[NAME] = HeliconeGateway(portal, settings) if ready else None


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
    def usage(portal, query):
        settings = portal.plugin_config(NAME)
        if not _has_key(settings):
            raise ValueError(NO_KEY)
        return usage_from_helicone(portal, query, settings)

    return [UsageProvider(NAME, usage)]


@hookimpl
def portal_health_checks(portal):
    settings = portal.plugin_config(NAME)

    def judge(body):
        status = body.get("status", "")
        return {"status": "up" if str(status).startswith("healthy") else "degraded", "detail": status}

    check = http_check(settings["api_url"].rstrip("/") + "/healthcheck", judge)

    def check_with_key(portal):
        result = check(portal)
        if result.get("status") == "up" and not _has_key(settings):
            return {**result, "status": "degraded", "detail": NO_KEY}
        return result

    return [HealthCheck(NAME, check_with_key, timeout=3.0, required=settings["required"])]
