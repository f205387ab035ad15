"""The portal's OpenAPI 3.1 document, built from the route table, and the page that renders it.

Every route of every enabled plugin is in it, with its methods, its path and query parameters, its access
(as a security requirement; ``x-access`` names the role), the request body schema the route
declares (the one the core checks bodies against), the answers it declares (``Route.responses``)
and the one error shape of every refusal.
The ``/docs`` page is Swagger UI, shipped in the package ``swagger-ui-bundle-v2`` (no CDN).
"""
from __future__ import annotations

import re

from . import __version__

_PARAMETER = re.compile(r"<(?:([^:<>]+):)?([^<>]+)>")
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "code": {"type": ["string", "null"]}, "request_id": {"type": ["string", "null"]}}}}}
_REFUSALS = {"400": "The request is not valid", "401": "No valid credential",
             "403": "The caller's role may not use this route", "404": "Not found",
             "413": "The body is too large", "429": "A limit or budget is reached",
             "502": "An upstream failed", "503": "A service the portal needs is unavailable",
             "504": "An upstream did not answer in time"}


def openapi_path(rule: str) -> tuple[str, list[dict]]:
    """Return a Flask rule as an OpenAPI path, with its path parameters."""
    parameters = []

    def replace(match):
        converter, name = match.group(1), match.group(2)
        schema = {"type": "integer"} if converter == "int" else {"type": "string"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _PARAMETER.sub(replace, rule), parameters


def _summary(route) -> str:
    if route.summary:
        return route.summary
    doc = (route.view.__doc__ or "").strip().splitlines()
    return doc[0].rstrip(".") if doc else route.path


def _responses(route, access: str) -> dict:
    """Return an operation's responses: what the route declares, else a success with no
    schema, and the error shape of every refusal the route does not describe itself."""
    declared = (route.responses if route is not None else None) or {"200": None}
    out = {}
    for status, answer in declared.items():
        description = "Success" if str(status).startswith("2") else _REFUSALS.get(str(status), "Answer")
        if answer is None:
            out[str(status)] = {"description": description}
        elif "content" in answer:
            out[str(status)] = {"description": description, **answer}
        else:
            out[str(status)] = {"description": description, "content": {"application/json": {"schema": answer}}}
    for status, text in _REFUSALS.items():
        if status in out or (access == "public" and status in ("401", "403")):
            continue
        out[status] = {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
    return out


def build_document(portal, may=None) -> dict:
    """Return the OpenAPI 3.1 document of ``portal``'s routes (exactly those of ``portal.routes``),
    or of those whose access ``may(access)`` allows (a caller sees only what they may call)."""
    paths: dict = {}
    for entry in portal.routes:
        if may is not None and entry["access"] != "public" and not may(entry["access"]):
            continue
        route = portal.route_details.get(entry["endpoint"])
        path, parameters = openapi_path(entry["path"])
        for method in entry["methods"]:
            if method in ("HEAD", "OPTIONS"):
                continue
            operation = {
                "operationId": f"{entry['endpoint']}.{method.lower()}",
                "summary": _summary(route) if route is not None else entry["path"],
                "tags": [entry["plugin"]],
                "x-access": entry["access"],
                "security": [] if entry["access"] == "public" else [{"bearer": []}, {"apiKey": []}],
                "responses": _responses(route, entry["access"]),
            }
            query = [{"name": name, "in": "query", "required": False, "schema": schema,
                      **({"description": schema["description"]} if "description" in schema else {})}
                     for name, schema in ((route.query or {}).items() if route is not None else ())]
            if parameters or query:
                operation["parameters"] = parameters + query
            if route is not None and route.max_body_bytes is not None:
                operation["x-max-body-bytes"] = route.max_body_bytes
            if entry["websocket"]:
                operation["x-websocket"] = True
                operation["description"] = "A WebSocket: upgrade this GET (see the README)."
            if route is not None and route.schema is not None and method in ("POST", "PUT", "PATCH"):
                operation["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": route.schema}}}
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Agent Portal", "version": __version__,
                 "description": "One door to a self-hosted AI stack: chat, agents, search, notebooks and "
                                "documents, with auth, limits, a ledger and health. Built from the routes "
                                "of the plugins this portal runs."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A portal token, an Open WebUI session token or an API key"},
                "apiKey": {"type": "http", "scheme": "bearer", "description": "An `ap-...` API key"}},
        },
    }


def docs_page(spec_url: str, assets: str) -> str:
    """Return the /docs page: Swagger UI reading ``spec_url``, its files under ``assets``."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Agent Portal API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/docs-init.js" data-spec="{spec_url}"></script>
</body></html>"""


DOCS_INIT = """window.ui = SwaggerUIBundle({
  url: document.currentScript.dataset.spec, dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis]
});
"""
