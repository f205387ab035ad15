"""LiteLLM proxy as a chat backend: models discovered from its ``/v1/models``, health from readiness."""
from __future__ import annotations

from agent_portal import ChatTarget, HealthCheck, ModelInfo, hookimpl
from agent_portal.upstream import LiteLLMUpstream

NAME = "litellm"


@hookimpl
def portal_config_schema():
    return {NAME: {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "pattern": "^https?://", "default": "http://127.0.0.1:4000"},
            "api_key": {"type": ["string", "null"]},
            "models": {"type": "array", "items": {"type": "string"}},
            "refresh_seconds": {"type": "number", "minimum": 1, "default": 30},
            "required": {"type": "boolean", "default": True},
        },
    }}


@hookimpl
def portal_startup(portal):
    settings = portal.plugin_config(NAME)
    portal.extensions[NAME] = LiteLLMUpstream(
        portal, NAME, settings["url"].rstrip("/") + "/v1", api_key=settings.get("api_key"),
        models=settings.get("models"), refresh_seconds=settings["refresh_seconds"])


@hookimpl
def portal_chat_backend(portal, model):
    backend = portal.extensions[NAME]
    if model in backend.model_ids():
        return ChatTarget(model=model, backend=backend, upstream_model=model)
    return None


@hookimpl
def portal_models(portal, actor):
    return [ModelInfo(id=m, backend=NAME) for m in portal.extensions[NAME].model_ids()]


@hookimpl
def portal_health_checks(portal):
    settings = portal.plugin_config(NAME)

    def readiness(portal):
        response = portal.http.get(settings["url"].rstrip("/") + "/health/readiness", timeout=3)
        if response.status_code != 200:
            return {"status": "down", "detail": f"HTTP {response.status_code}"}
        body = response.json()
        healthy = body.get("status") == "healthy"
        return {"status": "up" if healthy else "degraded", "detail": body.get("status"),
                "db": body.get("db")}

    return [HealthCheck(NAME, readiness, timeout=3.0, required=settings["required"])]
