"""Open WebUI's signed user header ``X-OpenWebUI-User-Jwt``; the unsigned ones are ignored."""
from __future__ import annotations

import jwt

from agent_portal import Actor, AuthError, hookimpl
from agent_portal.config import strict_object
from agent_portal.tokens import MAX_TOKEN_BYTES

NAME = "openwebui_header"
HEADER = "X-OpenWebUI-User-Jwt"
WEBUI_ROLES = ("admin", "user", "pending")


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
        "secret": {"type": "string", "minLength": 8},
        "max_age_seconds": {"type": "integer", "minimum": 10, "maximum": 3600, "default": 300},
    }, required=["secret"])}


@hookimpl(tryfirst=True)  # a signed header needs no call to Open WebUI: ask it before the session
def portal_actor_from_request(portal, request):
    token = request.headers.get(HEADER)
    if not token:
        return None
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthError("The signed user header is larger than 8 KB.", code="token_too_large")
    settings = portal.plugin_config(NAME)
    try:
        claims = jwt.decode(token, settings["secret"], algorithms=["HS256"], issuer="open-webui",
                            options={"require": ["sub", "role", "iss", "iat", "exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("The signed user header has expired.", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("The signed user header is invalid.", code="invalid_token") from exc
    if claims["exp"] - claims["iat"] > settings["max_age_seconds"]:
        raise AuthError("The signed user header lives longer than allowed.", code="invalid_token")
    if claims["role"] not in WEBUI_ROLES or not isinstance(claims["sub"], str) or not claims["sub"]:
        raise AuthError("The signed user header has a bad role or subject.", code="invalid_token")
    return Actor(id=claims["sub"], role=claims["role"], via="webui-header",
                 email=claims.get("email"), name=claims.get("name"))
