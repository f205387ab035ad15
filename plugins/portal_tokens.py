"""Portal-signed JWTs carrying the role: for teams without Open WebUI, for programs and tests."""
from __future__ import annotations

import time
from datetime import timedelta

from flask_jwt_extended import create_access_token

from agent_portal import Actor, AuthError, StartupError, hookimpl
from agent_portal.cache import TTLCache
from agent_portal.tokens import PORTAL_ISSUER, cached_credential, looks_like_jwt, unverified_issuer, verify_jwt

NAME = "portal_tokens"
ROLES = ("user", "admin")


@hookimpl
def portal_config_schema():
    return {NAME: {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "default_ttl_seconds": {"type": "integer", "minimum": 60, "default": 3600},
            "max_ttl_seconds": {"type": "integer", "minimum": 60, "default": 30 * 86400},
        },
    }}


@hookimpl
def portal_startup(portal):
    secret = portal.settings.get("secret_key")
    if not secret:
        raise StartupError(f"plugin {NAME!r}: portal.secret_key must be set (PORTAL_SECRET_KEY) "
                           "to sign and check portal tokens")
    portal.jwt_keys[PORTAL_ISSUER] = secret
    portal.extensions[NAME] = TTLCache()


@hookimpl
def portal_actor_from_request(portal, request):
    cache = portal.extensions[NAME]
    token, actor = cached_credential(request, cache)
    if token is None or actor is not None:
        return actor
    if not looks_like_jwt(token) or unverified_issuer(token) != PORTAL_ISSUER:
        return None
    claims = verify_jwt(token)
    role = claims.get("role")
    if role not in ROLES:
        raise AuthError("The token's role claim must be 'user' or 'admin'.", code="invalid_token")
    actor = Actor(id=claims["id"], role=role, via="portal-token", email=claims.get("email"),
                  name=claims.get("name"))
    cache.put(token, actor, min(claims["exp"] - time.time(), 300))
    return actor


def mint_token(portal, user_id: str, role: str, ttl_seconds: int | None = None,
               email: str | None = None, name: str | None = None) -> str:
    """Return a portal-signed token for ``user_id`` with ``role``, valid ``ttl_seconds``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    settings = portal.plugin_config(NAME)
    ttl = ttl_seconds or settings.get("default_ttl_seconds", 3600)
    if ttl > settings.get("max_ttl_seconds", 30 * 86400):
        raise ValueError(f"ttl is over plugins.{NAME}.max_ttl_seconds")
    claims = {"role": role, "iss": PORTAL_ISSUER}
    if email:
        claims["email"] = email
    if name:
        claims["name"] = name
    with portal.app.app_context():
        return create_access_token(identity=user_id, additional_claims=claims,
                                   expires_delta=timedelta(seconds=ttl))
