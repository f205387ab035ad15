"""Any OpenAI-compatible base URL as a chat backend: vLLM, Ollama, OpenAI, another LiteLLM."""
from __future__ import annotations

from agent_portal import ChatTarget, HealthCheck, ModelInfo, hookimpl
from agent_portal.config import strict_object
from agent_portal.upstream import OpenAIUpstream

NAME = "openai_compat"


@hookimpl
def portal_config_schema():
    upstream = {
        "type": "object",
        "additionalProperties": False,
        "required": ["base_url"],
        "properties": {
            "base_url": {"type": "string", "pattern": "^https?://"},
            "api_key": {"type": ["string", "null"]},
            "models": {"type": "array", "items": {"type": "string"}},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "refresh_seconds": {"type": "number", "minimum": 1, "default": 30},
            "required": {"type": "boolean"},
        },
    }
    return {NAME: strict_object({"upstreams": {"type": "object", "additionalProperties": upstream, "default": {}}})}


@hookimpl
def portal_startup(portal):
    portal.extensions[NAME] = {
        name: OpenAIUpstream(portal, name, spec["base_url"], api_key=spec.get("api_key"),
                             headers=spec.get("headers"), models=spec.get("models"),
                             refresh_seconds=spec["refresh_seconds"])
        for name, spec in portal.plugin_config(NAME)["upstreams"].items()
    }


@hookimpl
def portal_chat_backend(portal, model):
    for backend in portal.extensions[NAME].values():
        if model in backend.model_ids():
            return ChatTarget(model=model, backend=backend, upstream_model=model)
    return None


@hookimpl
def portal_backends(portal):
    return list(portal.extensions[NAME].values())


@hookimpl
def portal_models(portal, actor):
    return [ModelInfo(id=m, backend=name)
            for name, backend in portal.extensions[NAME].items() for m in backend.model_ids()]


@hookimpl
def portal_health_checks(portal):
    specs = portal.plugin_config(NAME)["upstreams"]

    def make(backend):
        def check(portal):
            models = backend.refresh()
            if backend.reachable:
                return {"status": "up", "detail": f"{len(models)} models"}
            return {"status": "down", "detail": backend.last_error}
        return check

    return [HealthCheck(f"{NAME}:{name}", make(backend), timeout=3.0,
                        required=bool(specs[name].get("required", False)))
            for name, backend in portal.extensions[NAME].items()]
