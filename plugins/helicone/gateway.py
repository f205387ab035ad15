"""Helicone's gateway as an OpenAI-compatible upstream that attributes every call to its caller."""
from __future__ import annotations

import uuid

from agent_portal.upstream import OpenAIUpstream


HELICONE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://agent-portal/helicone-request-id")


def helicone_request_id(request_id: str) -> str:
    """Return the ``Helicone-Request-Id`` of the portal's request ``request_id``: a version 5
    UUID derived from it. Helicone replaces any id that is not a standard UUID (versions 1-5),
    and the portal's own 32-hex ids, read as UUIDs, carry random version bits; derived, the
    same request id always maps to the same Helicone id."""
    return str(uuid.uuid5(HELICONE_NAMESPACE, request_id))


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

    def request_headers(self, request_id, actor, session_id=None):
        headers = super().request_headers(request_id, actor, session_id)
        if actor is not None:
            headers["Helicone-User-Id"] = actor.id
        headers["Helicone-Request-Id"] = helicone_request_id(request_id)
        if session_id:
            headers["Helicone-Session-Id"] = session_id
        return headers

    def upstream_call_id(self, request_id, response):
        """Helicone files the call under the id the portal sent."""
        return helicone_request_id(request_id)
