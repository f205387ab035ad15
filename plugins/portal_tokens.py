"""Portal-signed JWTs carrying the role: for teams without Open WebUI, for programs and tests."""
from __future__ import annotations

import time
from datetime import timedelta

from flask_jwt_extended import create_access_token

from agent_portal import Actor, AuthError, Command, StartupError, hookimpl
from agent_portal.config import strict_object
from agent_portal.cache import TTLCache
from agent_portal.config import parse_duration
from agent_portal.types import ROLES
from agent_portal.tokens import PORTAL_ISSUER, jwt_actor

NAME = "portal_tokens"


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        "default_ttl_seconds": {"type": "integer", "minimum": 60, "default": 3600},
        "max_ttl_seconds": {"type": "integer", "minimum": 60, "default": 30 * 86400},
    })}


@hookimpl
def portal_startup(portal):
    secret = portal.settings.get("secret_key")
    if not secret:
        raise StartupError(f"plugin {NAME!r}: portal.secret_key must be set (PORTAL_SECRET_KEY) "
                           "to sign and check portal tokens")
    portal.extensions[NAME] = TTLCache()


@hookimpl
def portal_jwt_keys(portal):
    return {PORTAL_ISSUER: portal.settings["secret_key"]}


@hookimpl(tryfirst=True)
def portal_actor_from_request(portal, request):
    def portal_actor(token, claims):
        role = claims.get("role")
        if role not in ROLES:
            raise AuthError("The token's role claim must be 'user' or 'admin'.", code="invalid_token")
        actor = Actor(id=claims["id"], role=role, via="portal-token", email=claims.get("email"),
                      name=claims.get("name"))
        return actor, min(claims["exp"] - time.time(), 300)

    return jwt_actor(request, portal.extensions[NAME], lambda issuer: issuer == PORTAL_ISSUER, portal_actor)


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


def _configure_token(parser) -> None:
    parser.add_argument("--user", required=True)
    parser.add_argument("--role", choices=list(ROLES), default="user")
    parser.add_argument("--ttl", default="1h", help="lifetime such as 15m, 1h, 30d")
    parser.add_argument("--email")


def _run_token(args, load_portal) -> int:
    portal = load_portal()
    if NAME not in portal.sources:
        raise StartupError(f"plugin {NAME!r} is not enabled in this config")
    print(mint_token(portal, args.user, args.role, parse_duration(args.ttl), email=args.email))
    return 0


@hookimpl
def portal_commands():
    return [Command("token", "print a portal-signed token", _configure_token, _run_token)]
