"""Collecting every plugin's routes, checking their access and mounting them on the app."""
from __future__ import annotations

import re

from flask import Blueprint, Flask, g, jsonify, request
from flask_sock import Sock

from .errors import AuthError, PortalError, StartupError
from .hooks import call_impl, implementations
from .schemas import HTML, NULLABLE_STRING, STRING, array, media, obj
from .types import ACCESS_LEVELS, Route

_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def bound_view(portal, name: str, func, **fixed):
    """Return a view named ``name`` that calls ``func(portal, **fixed, **url_values)``, for
    plugins that serve many routes from a few functions."""

    def view(**url_values):
        return func(portal, **fixed, **url_values)

    view.__name__ = name
    return view


_DRAFT_2019_ON = {"prefixItems", "unevaluatedProperties", "unevaluatedItems", "dependentRequired",
                  "dependentSchemas", "$defs", "minContains", "maxContains", "$anchor", "$dynamicRef"}


def _newer_than_draft7(schema) -> bool:
    if isinstance(schema, dict):
        return bool(_DRAFT_2019_ON & schema.keys()) or any(_newer_than_draft7(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_newer_than_draft7(v) for v in schema)
    return False


def _nearest_code(schema: dict, path) -> str | None:
    """Return the last ``x-error-code`` met walking ``schema`` down ``path``."""
    node, code = schema, schema.get("x-error-code")
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and node.get("x-error-code"):
            code = node["x-error-code"]
    return code


def body_check(schema: dict):
    """Return a function that raises 400 for a JSON body ``schema`` refuses (the error's code is
    the ``x-error-code`` of the failing part of the schema or the nearest part enclosing it, or
    of a missing property's schema, else ``invalid_request``)."""
    import fastjsonschema
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    # compiled to Python once: a valid body (nearly every call) costs a few microseconds instead
    # of jsonschema's ~150; jsonschema runs only on a refused body, to name what failed. A schema
    # with keywords newer than draft 7, the last draft fastjsonschema knows, is left to jsonschema.
    valid = None if _newer_than_draft7(schema) else \
        fastjsonschema.compile(schema, use_default=False, detailed_exceptions=False)

    def check(body) -> None:
        if valid is not None:
            try:
                valid(body)
                return
            except fastjsonschema.JsonSchemaException:
                pass
        error = next(iter(sorted(validator.iter_errors(body), key=lambda e: len(e.path))), None)
        if error is None:
            return
        code = _nearest_code(schema, error.absolute_schema_path)
        if error.validator == "required":
            missing = next((name for name in error.validator_value if isinstance(body, dict) and name not in body), None)
            code = ((error.schema.get("properties") or {}).get(missing) or {}).get("x-error-code", code)
        where = "/".join(str(p) for p in error.absolute_path)
        message = f"{where}: {error.message}" if where else error.message
        raise PortalError(f"The request body does not match this route's schema: {message}", status=400,
                          code=code or "invalid_request", type="invalid_request_error")

    return check


def core_routes(portal) -> list[Route]:
    """Return the core's own routes: liveness, readiness, and who the caller is."""

    def health():
        return jsonify(status="ok")

    def ready():
        if not portal.ready:
            return jsonify(status="starting"), 503
        return jsonify(status="ready", plugins=sorted(portal.sources))

    def me():
        actor = g.actor
        return {"user": actor.id, "role": actor.role, "via": actor.via, "email": actor.email, "name": actor.name}

    routes = [Route("/health", health, access="public", responses={"200": obj("status", status=STRING)}),
              Route("/ready", ready, access="public",
                    responses={"200": obj("status", "plugins", status=STRING, plugins=array(STRING)),
                               "503": obj("status", status=STRING)}),
              Route("/me", me, access="user", responses={"200": obj(
                  "user", "role", "via", user=STRING, role=STRING, via=STRING, email=NULLABLE_STRING,
                  name=NULLABLE_STRING)})]
    return routes + docs_routes(portal)


def docs_routes(portal) -> list[Route]:
    """Return ``/openapi.json`` and the ``/docs`` page with its files, for whoever
    ``portal.docs`` says (public, admin, or none when off)."""
    from flask import Response, abort, send_from_directory

    from .openapi import DOCS_INIT, build_document, docs_page
    from .page_headers import page_headers

    access = portal.settings.get("docs", "public")
    if access == "off":
        return []

    headers = page_headers(inline_styles=True)

    def openapi():
        """The OpenAPI 3.1 document of the routes the caller may call"""
        actor = g.get("actor")
        if actor is None:  # a public document: whoever asks may still be someone
            try:
                actor = portal.actor_from_request(request)
            except AuthError:
                actor = None
        return jsonify(build_document(portal, may=actor.may if actor is not None else _public_only))

    def docs():
        """The API reference page (Swagger UI)"""
        return Response(docs_page("/openapi.json", "/docs/assets"), mimetype="text/html", headers=headers)

    def docs_asset(name):
        """A file of the API reference page"""
        if name == "docs-init.js":
            return Response(DOCS_INIT, mimetype="text/javascript", headers=headers)
        if name not in ("swagger-ui.css", "swagger-ui-bundle.js"):
            abort(404)
        import swagger_ui_bundle

        response = send_from_directory(swagger_ui_bundle.swagger_ui_path, name, max_age=86400)
        response.headers.update({k: v for k, v in headers.items() if k != "Cache-Control"})
        return response

    return [Route("/openapi.json", openapi, access=access,
                  responses={"200": obj("openapi", "info", "paths", openapi=STRING, info=obj(), paths=obj())}),
            Route("/docs", docs, access=access, responses={"200": HTML}),
            Route("/docs/assets/<name>", docs_asset, access=access,
                  responses={"200": media(**{"text/css": STRING, "text/javascript": STRING})})]


def _public_only(access: str) -> bool:
    return access == "public"


def _path_key(path: str) -> str:
    """Return ``path`` with variable names erased, so ``/a/<x>`` and ``/a/<y>`` collide."""
    return _CONVERTER.sub("<>", path.rstrip("/") or "/")


def register_routes(portal, app: Flask, sock: Sock) -> None:
    """Mount the core's and every plugin's routes; raise :class:`StartupError` on a bad one.

    Refuses a route without a valid access level and two routes claiming one path and method.
    """
    declared = [("core", route) for route in core_routes(portal)]
    for impl in implementations(portal.hook.portal_register_routes):
        for route in call_impl(impl, portal=portal) or []:
            declared.append((impl.plugin_name, route))

    claimed: dict[tuple[str, str], str] = {}
    errors = []
    for plugin, route in declared:
        if route.access not in ACCESS_LEVELS:
            errors.append(f"plugin {plugin!r}: route {route.path} declares access {route.access!r};"
                          f" it must be one of {', '.join(ACCESS_LEVELS)}")
        for method in route.methods:
            key = (_path_key(route.path), method.upper())
            if key in claimed:
                errors.append(f"plugin {plugin!r}: {method} {route.path} is already claimed by"
                              f" plugin {claimed[key]!r}")
            claimed[key] = plugin
    if errors:
        raise StartupError("invalid routes:\n  - " + "\n  - ".join(errors))

    blueprints: dict[str, Blueprint] = {}
    for plugin, route in declared:
        bp = blueprints.setdefault(plugin, Blueprint(plugin, __name__))
        name = route.name or route.view.__name__
        if route.websocket:
            sock.route(route.path, bp=bp, endpoint=name)(route.view)
        else:
            bp.add_url_rule(route.path, endpoint=name, view_func=route.view,
                            methods=list(route.methods))
        endpoint = f"{plugin}.{name}"
        portal.access_by_endpoint[endpoint] = route.access
        portal.routes.append({"path": route.path, "methods": sorted(m.upper() for m in route.methods),
                              "access": route.access, "plugin": plugin,
                              "websocket": route.websocket, "endpoint": endpoint})
        portal.route_details[endpoint] = route
        if route.max_body_bytes is not None:
            portal.body_limits[endpoint] = route.max_body_bytes
        if route.schema is not None:
            portal.body_checks[endpoint] = body_check(route.schema)
    for bp in blueprints.values():
        app.register_blueprint(bp)
    for endpoint in app.view_functions:
        if endpoint in portal.access_by_endpoint:
            continue
        raise StartupError(f"route endpoint {endpoint!r} was added without declaring its access")
