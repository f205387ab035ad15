"""Open WebUI session JWTs: signature checked locally, role and liveness from Open WebUI."""
from __future__ import annotations

import time

import requests

from agent_portal import Actor, AuthError, HealthCheck, hookimpl
from agent_portal.config import strict_object
from agent_portal.cache import TTLCache
from agent_portal.observe import http_check
from agent_portal.tokens import PORTAL_ISSUER, jwt_actor

NAME = "openwebui_session"
WEBUI_ROLES = ("admin", "user", "pending")  # Open WebUI's roles; pending users may use nothing


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        "url": {"type": "string", "pattern": "^https?://"},
        "secret": {"type": "string", "minLength": 8},
        "cache_seconds": {"type": "number", "minimum": 0, "maximum": 3600, "default": 30},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 3},
    }, required=["url", "secret"])}


@hookimpl
def portal_startup(portal):
    settings = portal.plugin_config(NAME)
    if len(settings["secret"]) == 44:
        portal.app.logger.warning("a 44-character WEBUI_SECRET_KEY crashes Open WebUI 0.12.4 unless "
                                  "its OAuth encryption keys are set")
    portal.extensions[NAME] = TTLCache()


@hookimpl
def portal_jwt_keys(portal):
    return {None: portal.plugin_config(NAME)["secret"]}  # Open WebUI's session tokens carry no iss


@hookimpl
def portal_actor_from_request(portal, request):
    cache = portal.extensions[NAME]
    settings = portal.plugin_config(NAME)

    def session_actor(token, claims):
        who = _whoami(portal, settings, token)
        if who.get("id") != claims["id"]:
            raise AuthError("The session does not belong to the token's user.", code="invalid_token")
        role = who.get("role")
        if role not in WEBUI_ROLES:
            raise AuthError("Open WebUI answered an unknown role.", code="invalid_token")
        actor = Actor(id=claims["id"], role=role, via="webui-session", email=who.get("email"),
                      name=who.get("name"))
        return actor, min(settings["cache_seconds"], claims["exp"] - time.time())

    # Open WebUI's tokens carry no issuer; the portal's own are portal_tokens'
    return jwt_actor(request, cache, lambda issuer: issuer != PORTAL_ISSUER, session_actor)


def _whoami(portal, settings, token) -> dict:
    try:
        response = portal.http.get(f"{settings['url'].rstrip('/')}/api/v1/auths/",
                                   headers={"Authorization": f"Bearer {token}"},
                                   timeout=settings["timeout_seconds"])
    except requests.RequestException as exc:
        raise AuthError("Open WebUI cannot be reached to check the session.", status=503,
                        code="identity_provider_unavailable") from exc
    if response.status_code in (401, 403):
        raise AuthError("Open WebUI refused the session (expired, revoked or signed out).",
                        code="session_revoked")
    if response.status_code != 200:
        raise AuthError(f"Open WebUI answered {response.status_code} when checking the session.",
                        status=503, code="identity_provider_unavailable")
    try:
        body = response.json()
    except ValueError as exc:
        raise AuthError("Open WebUI answered the session check with something other than JSON.",
                        status=503, code="identity_provider_unavailable") from exc
    if not isinstance(body, dict):
        raise AuthError("Open WebUI's session check answered an unexpected shape.", status=503,
                        code="identity_provider_unavailable")
    return body


@hookimpl
def portal_health_checks(portal):
    return [HealthCheck("openwebui", http_check(portal.plugin_config(NAME)["url"].rstrip("/") + "/health"),
                        timeout=3.0)]
