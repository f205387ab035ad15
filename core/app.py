"""The app factory and the per-app ``Portal`` object that every hook receives."""
from __future__ import annotations

import atexit
import io
import logging
import os
import re

import requests
import urllib3
from flask import Flask, g, request
from flask_sock import Sock

from . import config as cfg
from . import config_file
from .audit import announce_admin_change
from .cors import TrustedProxies, cross_site_refusal, install_cors
from .outbound import OutboundPolicy
from .counting import TokenCounter
from .dispatch import ChatRecordDispatcher
from .errors import AuthError, PortalError, StartupError, error_response, register_error_handlers
from .hooks import call_each, call_impl, implementations
from .logs import configure_logging
from .plugin_manager import (build_plugin_manager, discover_builtins, discover_entry_points,
                             unknown_plugin_errors, validate_plugin_sections)
from .request_body import parse_json
from .routing import register_routes
from .sse import end_streams
from .tokens import install_jwt
from .upstream_client import UpstreamClients

log = logging.getLogger("agent_portal.app")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class Portal:
    """Everything one app shares: config, the plugin manager, HTTP clients, plugin state.

    Plugins keep their per-app state in ``portal.extensions[plugin_name]``; nothing lives at
    module level, so a test may build as many apps as it likes.
    """

    def __init__(self, config: dict, pm, sources: dict):
        self.config = config
        self.pm = pm
        self.hook = pm.hook
        self.sources = sources
        self.extensions: dict = {}
        self.routes: list[dict] = []
        self.access_by_endpoint: dict[str, str] = {}
        self.body_limits: dict[str, int] = {}  # endpoint -> its own body limit (Route.max_body_bytes)
        self.route_details: dict = {}  # endpoint -> its Route (for /openapi.json)
        self.body_checks: dict = {}  # endpoint -> the check of its declared body schema
        self.ready = False
        self.app: Flask | None = None
        # ``requests`` off the hot path (health, usage, admin proxies); urllib3 for the services
        # behind the portal; the chat path's own client (C-parsed answers) for chat upstreams.
        self.http = requests.Session()
        self.pool = urllib3.PoolManager(num_pools=32, maxsize=256, block=False, retries=False)
        self.upstream_clients = UpstreamClients()
        self.dispatcher = ChatRecordDispatcher(self)
        self.live_streams: set = set()  # the queues of streams being relayed (see sse.relay)
        self.token_counter = TokenCounter()  # vocabularies load on the first count
        self.outbound = OutboundPolicy(config["portal"].get("outbound_allow") or [])  # user-chosen URLs
        self._actor_sources: list = []
        self.jwt_keys: dict = {}  # issuer (None: no iss claim) -> HS256 secret, from portal_jwt_keys
        self._engine = None
        self._closed = False

    # --- config ---------------------------------------------------------------------------
    def plugin_config(self, name: str) -> dict:
        """Return the (validated, defaults filled) section ``plugins.<name>``; {} when absent."""
        return self.config.get("plugins", {}).get(name) or {}

    @property
    def settings(self) -> dict:
        """Return the core's own ``portal`` section."""
        return self.config["portal"]

    def embeds(self) -> dict:
        """Return every plugin's embedded admin UI (``portal_embeds``) as ``{name: Embed}``."""
        return {e.name: e for answer in self.hook.portal_embeds(portal=self) for e in answer or []}

    # --- shared database --------------------------------------------------------------------
    def database(self):
        """Return the SQLAlchemy engine for ``portal.database_url`` (created once per app)."""
        if self._engine is None:
            from .database import create_engine_for

            self._engine = create_engine_for(self.settings["database_url"])
        return self._engine

    # --- who is calling ---------------------------------------------------------------------
    def order_actor_sources(self) -> None:
        """Fix the order actor sources are asked in: ``auth.order`` when config gives one, else
        the plugins' own (``tryfirst``/``trylast``), once, at startup."""
        self._actor_sources = implementations(self.hook.portal_actor_from_request, self.config["auth"]["order"])

    def actor_from_request(self, req):
        """Return the caller of ``req`` from the first actor source that knows it, or None.

        Sources run in the order fixed at startup; one that raises :class:`AuthError` ends the search.
        """
        for impl in self._actor_sources:
            actor = call_impl(impl, portal=self, request=req)
            if actor is not None:
                return actor
        return None

    def actor_groups(self, actor) -> list[str]:
        """Return the groups (teams) ``actor`` belongs to, as every ``portal_actor_groups``
        plugin names them, each once."""
        found: list[str] = []
        for answer in self.hook.portal_actor_groups(portal=self, actor=actor):
            found.extend(group for group in answer or () if group not in found)
        return found

    # --- lifecycle --------------------------------------------------------------------------
    def end_streams(self) -> int:
        """End every stream being relayed with an error event (never a clean end), so each is
        recorded before the process goes; returns how many were told."""
        return end_streams(self.live_streams)

    def shutdown(self) -> None:
        """Flush queued records and let every plugin release what it holds; runs once."""
        if self._closed:
            return
        self._closed = True
        ended = self.end_streams()
        if ended:
            self.dispatcher.drain(2.0)  # the ended streams' records, before the plugins flush
        self.dispatcher.stop()
        call_each(self.hook.portal_shutdown, portal=self)  # one failing never stops the others' flush
        if self._engine is not None:
            self._engine.dispose()
        self.upstream_clients.close()


def checked_config(config: dict | str | None = None, environ=None, plugins: list | None = None,
                   load_entry_points: bool = True) -> tuple[dict, object, dict]:
    """Return ``(config, plugin manager, plugin sources)``: the config read, filled from the
    environment and checked (core and every plugin's section, secrets) without starting
    anything, so nothing is written. Raises :class:`StartupError` listing every mistake."""
    raw = config if isinstance(config, dict) else config_file.load_config_file(config)
    source = None if isinstance(config, dict) else config_file.config_path(config)
    missing: list[str] = []
    origins: dict = {}
    filled = config_file.fill_environment(raw, environ, missing=missing, origins=origins)
    if source and isinstance(filled.get("portal"), dict) and isinstance(filled["portal"].get("database_url"), str):
        filled["portal"]["database_url"] = config_file.anchor_sqlite(filled["portal"]["database_url"],
                                                             os.path.dirname(os.path.abspath(source)))
    errors = list(missing)
    errors += cfg.schema_errors(filled, cfg.CORE_SCHEMA, "")
    errors += cfg.secret_errors(filled, origins)
    errors += cfg.network_errors(filled)
    builtins = discover_builtins()  # scanning installed packages is slow: once per app
    third_party = discover_entry_points() if load_entry_points else {}
    errors += unknown_plugin_errors(filled, builtins, third_party, plugins)
    try:  # the plugins' sections are checked too, so that every mistake is reported in one go
        merged = cfg.merge_defaults(filled)
        pm, sources = build_plugin_manager(merged, builtins, third_party, plugins, refuse_unknown=False)
        errors += validate_plugin_sections(pm, merged)
    except (StartupError, TypeError, ValueError, AttributeError, KeyError):
        if not errors:
            raise
    cfg.raise_if_errors(errors)
    return merged, pm, sources


def create_app(config: dict | str | None = None, environ=None, plugins: list | None = None,
               load_entry_points: bool = True) -> Flask:
    """Build one portal app from a config mapping, a YAML path, or ``$AGENT_PORTAL_CONFIG``.

    ``plugins`` are plugin objects to register besides the installed ones (a module or an
    object with ``@hookimpl`` methods, named by its ``name`` attribute); ``load_entry_points``
    false skips third-party plugins (the built-ins still load when config enables them).
    Returns the Flask app; ``app.extensions["agent_portal"]`` is its :class:`Portal`.
    Raises :class:`StartupError` listing every config mistake at once.
    """
    merged, pm, sources = checked_config(config, environ, plugins, load_entry_points)
    configure_logging(merged["portal"]["log_level"])
    portal = Portal(merged, pm, sources)
    app = PortalFlask("agent_portal", static_folder=None)
    app.url_map.merge_slashes = False  # "//host" must reach the proxies' checks, not be redirected
    app.config["MAX_CONTENT_LENGTH"] = merged["portal"]["max_body_bytes"]
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": merged["portal"]["max_body_bytes"],
                                         "ping_interval": 25}
    app.json.sort_keys = False
    app.extensions["agent_portal"] = portal
    portal.app = app
    register_error_handlers(app)

    install_jwt(app, portal)
    start_plugins(portal)
    portal.jwt_keys = collect_jwt_keys(portal)
    portal.order_actor_sources()
    register_routes(portal, app, Sock(app))
    _install_request_hooks(portal, app)
    portal.ready = True
    atexit.register(portal.shutdown)
    return app


def start_plugins(portal: Portal) -> None:
    """Call each plugin's ``portal_startup`` in pluggy's order, naming the plugin that fails."""
    for impl in implementations(portal.hook.portal_startup):
        try:
            call_impl(impl, portal=portal)
        except StartupError:
            raise
        except Exception as exc:
            raise StartupError(f"plugin {impl.plugin_name!r} failed to start: {type(exc).__name__}: {exc}") from exc


def bound_chunked_body(environ, limit: int):
    """Read a body sent without Content-Length (chunked) up to ``limit`` bytes and put it back
    as a sized one; returns a 413 response when it is longer. Werkzeug would otherwise cut such
    a body at the limit without a word, so a padded body could pass truncated."""
    if environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    stream, parts, size = environ["wsgi.input"], [], 0
    while size <= limit:
        part = stream.read(min(65536, limit + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    data = b"".join(parts)
    if len(data) > limit:
        return error_response(413, f"The request body is larger than {limit} bytes.", code="body_too_large")
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("wsgi.input_terminated", None)
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # werkzeug ignores the length of a chunked body
    return None


def collect_jwt_keys(portal: Portal) -> dict:
    """Return ``{issuer: secret}`` from every plugin's ``portal_jwt_keys``; two plugins claiming
    one issuer stop startup (a token must have one key that checks it)."""
    keys: dict = {}
    owners: dict = {}
    for impl in implementations(portal.hook.portal_jwt_keys):
        for issuer, secret in (call_impl(impl, portal=portal) or {}).items():
            if issuer in keys:
                raise StartupError(f"plugins {owners[issuer]!r} and {impl.plugin_name!r} both sign tokens "
                                   f"of issuer {issuer!r}")
            keys[issuer], owners[issuer] = secret, impl.plugin_name
    return keys


class PortalFlask(Flask):
    """Flask, asking once per hook and view (not on every request: four ``inspect`` calls a
    request) whether it is a coroutine that needs wrapping."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._callables: dict = {}

    def ensure_sync(self, func):
        known = self._callables.get(func)
        if known is None:
            known = self._callables[func] = super().ensure_sync(func)
        return known


def _install_request_hooks(portal: Portal, app: Flask) -> None:
    access_by_endpoint = portal.access_by_endpoint
    trust_request_id = portal.settings["trust_request_id"]
    max_body = portal.settings["max_body_bytes"]
    cors_origins = set(portal.settings["cors_origins"])
    proxies = TrustedProxies(portal.settings["trusted_proxies"])

    body_limits = portal.body_limits

    @app.before_request
    def _bound_body():
        limit = body_limits.get(request.endpoint)
        if limit is not None:
            request.max_content_length = limit
        return bound_chunked_body(request.environ, limit or max_body)

    install_cors(app, portal.settings["cors_origins"])

    @app.before_request
    def _identify_and_authorise():
        incoming = request.headers.get("X-Request-ID") if trust_request_id else None
        g.request_id = incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        access = access_by_endpoint.get(request.endpoint)
        if access is None or access == "public":
            return None  # public, or no such route: Flask answers 404/405 itself
        refusal = cross_site_refusal(request, cors_origins, proxies)
        if refusal is not None:
            return refusal
        if request.query_string and ("access_token" in request.args or "token" in request.args):
            return error_response(401, "Credentials are not accepted in the URL; send an "
                                  "Authorization header.", code="token_in_url",
                                  headers={"WWW-Authenticate": 'Bearer realm="agent-portal"'})
        try:
            actor = portal.actor_from_request(request)
        except AuthError as exc:
            if exc.status == 401:
                exc.headers.setdefault("WWW-Authenticate", 'Bearer realm="agent-portal"')
            raise
        if actor is None:
            if getattr(app.view_functions.get(request.endpoint), "auth_in_first_message", False):
                g.actor = None
                return None
            return error_response(401, "Authentication required.", code="unauthenticated",
                                  headers={"WWW-Authenticate": 'Bearer realm="agent-portal"'})
        if actor.role == "pending":
            return error_response(403, "Your account is pending approval.", code="pending_user")
        if not actor.may(access):
            return error_response(403, f"This route needs the {access} role.", code="forbidden")
        g.actor = actor
        check = portal.body_checks.get(request.endpoint)
        if check is not None and request.method in ("POST", "PUT", "PATCH"):
            body = parse_json(request.get_data(cache=True) or b"null")
            check(body)
            g.json_body = body  # parsed and checked once: the view reads it from here
        return None

    @app.after_request
    def _tag_response(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        announce_admin_change(portal, response, access_by_endpoint.get(request.endpoint))
        return response


def portal_of(app: Flask) -> Portal:
    """Return the :class:`Portal` of ``app``."""
    return app.extensions["agent_portal"]


__all__ = ["Portal", "create_app", "portal_of", "StartupError", "PortalError"]
