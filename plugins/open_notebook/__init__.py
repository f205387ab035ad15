"""Notebooks: Open Notebook behind the portal, each user with notebooks of their own.

Open Notebook has one shared password and no users, so every caller with it sees everything;
behind the portal a notebook belongs to the user who created it (the portal keeps that in its
own database, ``owners``), and so do the sources and notes made in it. ``/notebooks/...`` maps
onto Open Notebook's ``/api/...`` (``views``); asking a notebook is metered like chat (``ask``).
"""
from __future__ import annotations

from types import SimpleNamespace

from agent_portal import HealthCheck, PortalError, Route, hookimpl
from agent_portal.observe import http_check
from agent_portal.routing import bound_view

from . import ask, views
from .client import NotebookClient
from .owners import OwnerStore
from .settings import NAME, NotebookSettings, config_schema


class NotebookState:
    def __init__(self, portal, settings: NotebookSettings):
        self.settings = settings
        self.client = NotebookClient(portal, settings)
        self.owners = OwnerStore(portal.database())
        self.backend = SimpleNamespace(name=NAME)  # what ask records name as their backend


@hookimpl
def portal_config_schema():
    return {NAME: config_schema()}


@hookimpl
def portal_startup(portal):
    portal.extensions[NAME] = NotebookState(portal, NotebookSettings(portal.plugin_config(NAME)))


@hookimpl
def portal_health_checks(portal):
    state = portal.extensions[NAME]
    healthy = http_check(state.settings.url + "/health",
                         judge=lambda body: {"status": "up" if body.get("status") == "healthy" else "degraded",
                                             "detail": f"status {body.get('status')!r}"})

    def check(portal):
        answer = healthy(portal)
        if answer["status"] != "up":
            return answer
        try:  # /health is open: the password is only tested by an API call
            state.client.call("GET", "/api/notebooks", params={"archived": "false"})
        except PortalError as problem:
            return {"status": "down", "detail": problem.message}
        return answer

    return [HealthCheck(NAME, check, timeout=3.0, required=state.settings.required)]


@hookimpl
def portal_register_routes(portal):
    def view(name, func, **fixed):
        return bound_view(portal, name, func, **fixed)

    N, nb = "/notebooks", "/notebooks/<notebook_id>"
    return [
        Route(N, view("notebooks", views.notebooks), ("GET", "POST"), "user"),
        Route(f"{N}/search", view("search_all", views.search), ("POST",), "user"),
        Route(nb, view("notebook", views.notebook), ("GET", "PUT", "DELETE"), "user"),
        Route(f"{nb}/sources", view("sources", views.sources), ("GET", "POST"), "user"),
        Route(f"{nb}/sources/<source_id>", view("source", views.source), ("GET", "DELETE"), "user"),
        Route(f"{nb}/sources/<source_id>/status", view("source_status", views.source, part="status"), ("GET",),
              "user"),
        Route(f"{nb}/notes", view("notes", views.notes), ("GET", "POST"), "user"),
        Route(f"{nb}/notes/<note_id>", view("note", views.note), ("GET", "PUT", "DELETE"), "user"),
        Route(f"{nb}/search", view("search_notebook", views.search), ("POST",), "user"),
        Route(f"{nb}/ask", view("ask", ask.ask), ("POST",), "user"),
        Route(f"{nb}/ask/simple", view("ask_simple", ask.ask, simple=True), ("POST",), "user"),
    ]
