"""Bearer credentials: where they travel, and HS256 JWT checks through flask-jwt-extended."""
from __future__ import annotations

import secrets

import jwt
from flask import Flask
from flask_jwt_extended import JWTManager, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException

from .errors import AuthError

MAX_TOKEN_BYTES = 8192
PORTAL_ISSUER = "agent-portal"
REQUIRED_CLAIMS = ("exp", "iat")


def bearer_token(request) -> str | None:
    """Return the credential of ``request``: the Bearer header, else the ``token`` cookie.

    Raises :class:`AuthError` for a credential over 8 KB or a malformed Authorization header.
    Never reads the query string.
    """
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError("The Authorization header must be 'Bearer <token>'.", code="bad_auth_header")
        token = value.strip()
    else:
        token = request.cookies.get("token")
        if not token:
            return None
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthError("The credential is larger than 8 KB.", code="token_too_large")
    return token


def cached_credential(request, cache) -> tuple[str | None, object]:
    """Return ``(credential, actor)``: the request's credential and the actor ``cache`` already
    holds for it (None when not checked yet). Checked credentials skip every decoding step."""
    token = bearer_token(request)
    if not token:
        return None, None
    return token, cache.get(token)


def jwt_actor(request, cache, accepts_issuer, make_actor):
    """Return the caller of ``request`` if its credential is a JWT of this source, else None.

    A token checked before comes from ``cache``. Otherwise a token whose unverified ``iss``
    ``accepts_issuer(iss)`` refuses is not this source's (None); one it accepts is verified
    (:func:`verify_jwt`, raising 401 when bad), and ``make_actor(token, claims)`` returns
    ``(actor, seconds to cache it)``.
    """
    token, actor = cached_credential(request, cache)
    if token is None or actor is not None:
        return actor
    if not looks_like_jwt(token) or not accepts_issuer(unverified_issuer(token)):
        return None
    actor, seconds = make_actor(token, verify_jwt(token))
    cache.put(token, actor, seconds)
    return actor


def looks_like_jwt(token: str) -> bool:
    """Return True when ``token`` has the three dot-separated parts of a JWS."""
    return token.count(".") == 2


def unverified_issuer(token: str) -> str | None:
    """Return the ``iss`` claim without checking the signature (only to pick the key)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def install_jwt(app: Flask, portal) -> JWTManager:
    """Set up flask-jwt-extended on ``app``: HS256 only, identity claim ``id``.

    The signing key is chosen by the token's issuer from ``portal.jwt_keys``
    (``{issuer or None: secret}``); an issuer with no key gets a random one, so it never verifies.
    """
    app.config.update(
        JWT_SECRET_KEY=portal.settings.get("secret_key") or secrets.token_hex(32),
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_IDENTITY_CLAIM="id",
        JWT_DECODE_LEEWAY=0,
        JWT_TOKEN_LOCATION=["headers"],
    )
    manager = JWTManager(app)
    unknown_issuer_key = secrets.token_hex(32)

    @manager.decode_key_loader
    def _key_for(_header, claims):
        return portal.jwt_keys.get(claims.get("iss"), unknown_issuer_key)

    return manager


def verify_jwt(token: str) -> dict:
    """Return the verified claims of ``token``; raise a 401 :class:`AuthError` otherwise.

    Checks signature (HS256 only: ``none`` and asymmetric algorithms are refused), ``exp``,
    ``nbf``, ``iat`` and the presence of ``id``, ``exp`` and ``iat``.
    """
    try:
        claims = decode_token(token)
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("The token has expired.", code="token_expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise AuthError("The token is not valid yet.", code="token_not_yet_valid") from exc
    except (jwt.PyJWTError, JWTExtendedException, ValueError, TypeError) as exc:
        raise AuthError("The token is invalid.", code="invalid_token") from exc
    missing = [c for c in REQUIRED_CLAIMS if c not in claims]
    if missing:
        raise AuthError(f"The token lacks the claim(s) {', '.join(missing)}.", code="invalid_token")
    if not isinstance(claims.get("id"), str) or not claims["id"]:
        raise AuthError("The token's id claim must be a non-empty string.", code="invalid_token")
    return claims
