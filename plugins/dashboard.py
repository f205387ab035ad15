"""The portal's own dashboard at ``/dashboard``: health, usage with a chart, live calls, errors.

The page itself is a static shell with no data (public); everything it shows comes from the
admin-only observability API, called with the browser's Open WebUI ``token`` cookie (same site)
or a token the admin pastes, which stays in the tab's ``sessionStorage``.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import Response, request

from agent_portal import PortalError, Route, hookimpl
from agent_portal.errors import AuthError

from agent_portal.page_headers import page_headers
from agent_portal.schemas import BOOLEAN, HTML, STRING, array, media, obj

NAME = "dashboard"
STATIC = Path(__file__).resolve().parent / "static"
FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
SECURITY_HEADERS = page_headers()


def _static(name: str, mimetype: str, headers=SECURITY_HEADERS) -> Response:
    return Response((STATIC / name).read_bytes(), mimetype=mimetype, headers=headers)


@hookimpl
def portal_register_routes(portal):
    # the page may frame the admin UIs that live on hosts of their own, and no other site
    page_security = page_headers(frame_origins=[
        "{0.scheme}://{0.netloc}".format(urlsplit(e.public_url)) for e in portal.embeds().values() if e.public_url])

    def page():
        return _static("dashboard.html", "text/html", page_security)

    def session():
        """Who the console's caller is, signed in or not (always 200, so the page's first look
        is not an error in the browser's console)"""
        try:
            actor = portal.actor_from_request(request)
        except AuthError as refusal:
            return {"signed_in": False, "reason": refusal.message}
        if actor is None:
            return {"signed_in": False, "reason": "Not signed in."}
        answer = {"signed_in": True, "user": actor.id, "role": actor.role, "via": actor.via}
        if actor.role == "admin":  # what the console may show: the tabs of plugins that are on
            answer["plugins"] = sorted(portal.sources)
            answer["embeds"] = [{"name": e.name, "title": e.title, "path": e.path}
                                for _, e in sorted(portal.embeds().items())] if "embeds" in portal.sources else []
        return answer

    def asset(filename):
        if filename not in FILES:
            raise PortalError("No such dashboard file.", status=404, code="not_found")
        return _static(filename, FILES[filename])

    return [Route("/dashboard", page, access="public", responses={"200": HTML}),
            Route("/dashboard/session", session, access="public", responses={"200": obj(
                "signed_in", signed_in=BOOLEAN, user=STRING, role=STRING, via=STRING, reason=STRING,
                plugins=array(STRING), embeds=array(obj("name", "title", "path", name=STRING, title=STRING,
                                                        path=STRING)))}),
            Route("/dashboard/static/<filename>", asset, access="public",
                  responses={"200": media(**{"text/css": STRING, "text/javascript": STRING})})]
