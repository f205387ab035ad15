"""LiteLLM proxy as a chat backend: models discovered from its ``/v1/models``, health from readiness,
and ``agent-portal up`` to start a local one with offline demo models in front of the portal."""
from __future__ import annotations

import os

from agent_portal import ChatTarget, Command, HealthCheck, ModelInfo, hookimpl
from agent_portal.config import strict_object
from agent_portal.observe import http_check

from .upstream import LiteLLMUpstream

NAME = "litellm"


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        "url": {"type": "string", "pattern": "^https?://", "default": "http://127.0.0.1:4000"},
        "api_key": {"type": ["string", "null"]},
        "models": {"type": "array", "items": {"type": "string"}},
        "refresh_seconds": {"type": "number", "minimum": 1, "default": 30},
        "required": {"type": "boolean", "default": True},
    })}


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
def portal_backends(portal):
    return [portal.extensions[NAME]]


@hookimpl
def portal_models(portal, actor):
    return [ModelInfo(id=m, backend=NAME) for m in portal.extensions[NAME].model_ids()]


@hookimpl
def portal_health_checks(portal):
    settings = portal.plugin_config(NAME)

    def judge(body):
        healthy = body.get("status") == "healthy"
        return {"status": "up" if healthy else "degraded", "detail": body.get("status"), "db": body.get("db")}

    readiness = http_check(settings["url"].rstrip("/") + "/health/readiness", judge)
    return [HealthCheck(NAME, readiness, timeout=3.0, required=settings["required"])]


def _configure_up(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--litellm-port", type=int, default=4000)
    parser.add_argument("--litellm-config", default="config/litellm.yaml")
    parser.add_argument("--litellm-bin", default=os.environ.get("LITELLM_BIN", ".cache/litellm-venv/bin/litellm"))
    parser.add_argument("--workers", type=int, default=1)


def _run_up(args, load_portal) -> int:
    from .quickstart import up

    return up(args)


@hookimpl
def portal_commands():
    return [Command("up", "start a local LiteLLM with demo models and the portal", _configure_up, _run_up)]
