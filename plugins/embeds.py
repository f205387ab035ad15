"""Embedded admin UIs: ``/embed/<name>/<path>`` reverse-proxies each UI, admin only.

The UIs come from this plugin's ``uis`` and from every plugin's ``portal_embeds`` hook. The
portal strips the UI's own framing refusal (``X-Frame-Options``, CSP ``frame-ancestors``) and
puts its own policy in its place, so only the portal's pages may frame it.
"""
from __future__ import annotations

from agent_portal import Embed, PortalError, Route, hookimpl
from agent_portal.config import strict_object
from agent_portal.proxy import proxy
from agent_portal.schemas import STRING, array, obj

NAME = "embeds"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@hookimpl
def portal_config_schema():
    ui = {"type": "object", "additionalProperties": False, "required": ["url"],
          "properties": {"url": {"type": "string", "pattern": "^https?://"}, "title": {"type": "string"},
                         "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                         "timeout_seconds": {"type": "number", "exclusiveMinimum": 0}}}
    return {NAME: strict_object({
        "uis": {"type": "object", "propertyNames": {"pattern": "^[a-z0-9][a-z0-9-]{0,40}$"},
                "additionalProperties": ui, "default": {}},
        "frame_ancestors": {"type": "string", "default": "'self'"},
    })}


@hookimpl
def portal_embeds(portal):
    return [Embed(name, spec.get("title", name), spec["url"], dict(spec.get("headers") or {}),
                  spec.get("timeout_seconds", 30.0))
            for name, spec in portal.plugin_config(NAME)["uis"].items()]


def all_embeds(portal) -> dict:
    """Return ``{name: Embed}`` from every plugin."""
    return {e.name: e for answer in portal.hook.portal_embeds(portal=portal) for e in answer or []}


@hookimpl
def portal_register_routes(portal):
    settings = portal.plugin_config(NAME)

    def list_embeds():
        return {"data": [{"name": e.name, "title": e.title, "path": f"/embed/{e.name}/"}
                         for e in sorted(all_embeds(portal).values(), key=lambda e: e.name)]}

    def embed(name, subpath=""):
        ui = all_embeds(portal).get(name)
        if ui is None:
            raise PortalError(f"No embedded UI is named {name!r}.", status=404, code="unknown_embed")
        return proxy(portal, ui.url, f"/embed/{name}", ui.headers, ui.timeout, settings["frame_ancestors"])

    return [Route("/embeds", list_embeds, access="admin", responses={"200": obj("data", data=array(
                obj("name", "title", "path", name=STRING, title=STRING, path=STRING)))}),
            Route("/embed/<name>/", embed, methods=METHODS, access="admin", name="embed_root"),
            Route("/embed/<name>/<path:subpath>", embed, methods=METHODS, access="admin")]
