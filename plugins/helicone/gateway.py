"""Helicone's gateway as an OpenAI-compatible upstream that attributes every call to its caller."""
from __future__ import annotations

import uuid

from agent_portal.upstream import OpenAIUpstream


def helicone_request_id(request_id: str) -> str:
    """Return the portal's request id as the UUID Helicone expects (it is one when 32 hex digits)."""
    try:
        return str(uuid.UUID(hex=request_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"agent-portal:{request_id}"))


class HeliconeGateway(OpenAIUpstream):
    """Helicone's OpenAI-compatible gateway as a chat backend."""

    kind = "helicone"

    def __init__(self, portal, settings: dict):
        headers = {f"Helicone-Property-{k}": v for k, v in settings["properties"].items()}
        api_key = None
        if settings["gateway_auth"] == "bearer":  # the AI gateway: Helicone key as the bearer
            api_key = settings["api_key"]
        else:  # the legacy proxy: Helicone-Auth beside the provider's own key
            headers["Helicone-Auth"] = f"Bearer {settings['api_key']}"
            api_key = settings.get("upstream_api_key")
        super().__init__(portal, "helicone", settings["gateway_url"], api_key=api_key, headers=headers,
                         models=settings.get("models"))

    def request_headers(self, request_id, actor):
        headers = super().request_headers(request_id, actor)
        headers["Helicone-User-Id"] = actor.id
        headers["Helicone-Request-Id"] = helicone_request_id(request_id)
        return headers


# --- usage ---------------------------------------------------------------------------------------
