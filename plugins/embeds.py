"""Embedded admin UIs: ``/embed/<name>/<path>`` reverse-proxies each UI, admin only.

The UIs come from this plugin's ``uis`` and from every plugin's ``portal_embeds`` hook. The
portal strips the UI's own framing refusal (``X-Frame-Options``, CSP ``frame-ancestors``) and
puts its own policy in its place, so only the portal's pages may frame it. The portal rewrites
no page: a UI renders framed only when it is served under ``/embed/<name>/`` itself (its own
base-path setting, README "Embedded admin UIs"); health says when one is not (``embed:<name>``).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from agent_portal import Embed, HealthCheck, PortalError, Route, hookimpl
from agent_portal.config import strict_object
from agent_portal.offload import off_loop
from agent_portal.page_assets import MAX_PAGE_BYTES, outside_prefix, page_assets
from agent_portal.proxy import proxy
from agent_portal.schemas import STRING, array, obj

NAME = "embeds"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@hookimpl
def portal_config_schema():
    ui = {"type": "object", "additionalProperties": False, "required": ["url"],
          "properties": {"url": {"type": "string", "pattern": "^https?://"}, "title": {"type": "string"},
                         "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                         # where the console opens the UI, under /embed/<name>/ (LiteLLM: ui/)
                         "page": {"type": "string", "pattern": "^(?!/)[A-Za-z0-9._~/-]*$", "default": ""},
                         # a UI that only works at a site's root: the host of its own where
                         # browsers reach it; the console frames it there (README)
                         "public_url": {"type": "string", "pattern": "^https?://[^/?#]+/?$"},
                         "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 30.0}}}
    return {NAME: strict_object({
        "uis": {"type": "object", "propertyNames": {"pattern": "^[a-z0-9][a-z0-9-]{0,40}$"},
                "additionalProperties": ui, "default": {}},
        "frame_ancestors": {"type": "string", "default": "'self'"},
    })}


@hookimpl
def portal_embeds(portal):
    return [Embed(name, spec.get("title", name), spec["url"], dict(spec.get("headers") or {}),
                  spec["timeout_seconds"], spec["page"], spec.get("public_url"))
            for name, spec in portal.plugin_config(NAME)["uis"].items()]


@hookimpl
def portal_register_routes(portal):
    settings = portal.plugin_config(NAME)

    def list_embeds():
        return {"data": [{"name": e.name, "title": e.title, "path": e.path}
                         for e in sorted(portal.embeds().values(), key=lambda e: e.name)]}

    def embed(name, subpath=""):
        ui = portal.embeds().get(name)
        if ui is None or ui.public_url:  # one on a host of its own is never proxied
            raise PortalError(f"No embedded UI is named {name!r}.", status=404, code="unknown_embed")
        return proxy(portal, ui.url, f"/embed/{name}", ui.headers, ui.timeout, settings["frame_ancestors"])

    return [Route("/embeds", list_embeds, access="admin", responses={"200": obj("data", data=array(
                obj("name", "title", "path", name=STRING, title=STRING, path=STRING)))}),
            Route("/embed/<name>/", embed, methods=METHODS, access="admin", name="embed_root"),
            Route("/embed/<name>/<path:subpath>", embed, methods=METHODS, access="admin")]


@hookimpl
def portal_health_checks(portal):
    return [HealthCheck(f"embed:{ui.name}", lambda portal, ui=ui: framed_page_health(portal, ui), timeout=5.0)
            for ui in portal.embeds().values()]


# the portal's origin as a framed page's browser sees it; only its paths matter
_BROWSER_ORIGIN = "http://portal.invalid"


def framed_page_health(portal, ui: Embed) -> dict:
    """Return the health of one embedded UI: ``down`` when its page does not answer, ``degraded``
    when the page names scripts, stylesheets or fonts that a browser framing it where the console
    does (``/embed/<name>/``, or its ``public_url``) would ask of the portal's root (a UI served
    at its own root) or of the service's own address, else ``up``."""
    base = ui.url.rstrip("/")
    response = portal.http.get(f"{base}/{ui.page}", headers=ui.headers, timeout=3.0, stream=True)
    try:
        if response.status_code >= 400:
            return {"status": "down", "detail": f"its page /embed/{ui.name}/{ui.page} answers HTTP {response.status_code}"}
        if "html" not in response.headers.get("Content-Type", ""):
            return {"status": "up", "detail": f"HTTP {response.status_code}, not a web page"}
        html = response.raw.read(MAX_PAGE_BYTES, decode_content=True).decode(response.encoding or "utf-8", "replace")
    finally:
        response.close()
    final = urlsplit(response.url)
    base_path = urlsplit(base).path
    seen_at = final.path[len(base_path):] if final.path.startswith(base_path) else final.path
    framed_at = urlsplit(ui.public_url or f"{_BROWSER_ORIGIN}/embed/{ui.name}")
    origin, prefix = f"{framed_at.scheme}://{framed_at.netloc}", framed_at.path.rstrip("/")
    # up to MAX_PAGE_BYTES of HTML parsed: in a real thread, never on a serving worker's loop
    assets = off_loop(page_assets, html, f"{origin}{prefix}/{seen_at.lstrip('/')}")
    upstream_origin = f"{final.scheme}://{final.netloc}"
    lost = outside_prefix(assets, origin, prefix) + [
        a for a in assets if upstream_origin != origin and a.startswith(upstream_origin + "/")]
    if lost:
        return {"status": "degraded", "assets": len(assets), "outside": len(lost), "detail": (
            f"the page loads {len(lost)} of its {len(assets)} scripts, stylesheets and fonts from outside "
            f"{prefix}/ (such as {lost[0]}), so it renders empty in the console: serve the UI under "
            f"{prefix} with its own base-path setting, or on a host of its own (public_url; README, "
            f"Embedded admin UIs)")}
    own = [a for a in assets if a.startswith(origin + "/")]
    if own:  # the first one, fetched as the proxy would: a page can name paths its server lacks
        path = urlsplit(own[0]).path[len(prefix):]
        probe = portal.http.get(base + path, headers=ui.headers, timeout=3.0, stream=True)
        probe.close()
        if probe.status_code >= 400:
            return {"status": "degraded", "assets": len(assets), "detail": (
                f"its page names {prefix}{path}, which answers HTTP {probe.status_code} from {base}: "
                f"the embed's url must be where the UI serves its base path")}
    return {"status": "up", "assets": len(assets), "detail": f"its page and {len(assets)} assets under {prefix}/"}
