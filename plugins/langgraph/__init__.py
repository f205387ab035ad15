"""Agents: a LangGraph server behind the portal, under ``/agents/``, and its graphs as models.

``/agents/...`` has the server's own paths and bodies, so ``langgraph-sdk`` clients work when
pointed at ``<portal>/agents``. Threads belong to whoever created them (``threads``); runs are
admitted, relayed and recorded like chat calls (``runs``); ``agent:<graph_id>`` is a chat model
(``as_model``). Modules: ``settings``, ``client`` (the server), ``events`` (its stream, metering),
``proxy`` (forwarding), ``threads``, ``runs``, ``assistants``, ``as_model``.
"""
from __future__ import annotations

from flask import g

from agent_portal import ChatTarget, HealthCheck, PortalError, Route, hookimpl
from agent_portal.adapter import PrefixedModels
from agent_portal.routing import bound_view

from . import assistants, threads
from .as_model import PREFIX, AgentBackend
from .client import LangGraphClient, segment
from .owners import ThreadOwners
from .proxy import forward, forward_stream, json_body
from .runs import agent_run, background_run, checked_run_body, stream_run, wait_run
from .settings import NAME, AgentSettings, config_schema


class AgentState:
    """What the plugin keeps per app."""

    def __init__(self, portal, settings: AgentSettings):
        self.settings = settings
        self.client = LangGraphClient(portal, settings)
        self.backend = AgentBackend(self.client)
        self.models = PrefixedModels(PREFIX, NAME, settings.expose_as_models)
        self.thread_owners = ThreadOwners(portal.settings.get("redis_url"))


@hookimpl
def portal_config_schema():
    return {NAME: config_schema()}


@hookimpl
def portal_startup(portal):
    portal.extensions[NAME] = AgentState(portal, AgentSettings(portal.plugin_config(NAME)))


@hookimpl
def portal_backends(portal):
    state = portal.extensions[NAME]
    return state.models.backends(state.backend)


@hookimpl
def portal_chat_backend(portal, model):
    state = portal.extensions[NAME]
    graph = state.models.name_in(model)
    if graph is None:
        return None
    if graph not in state.client.graph_ids(refresh_if_missing=graph):
        return None
    price_in, price_out = state.settings.prices(graph)
    return ChatTarget(model=model, backend=state.backend, upstream_model=model, input_cost_per_token=price_in,
                      output_cost_per_token=price_out, portal_name=True)


@hookimpl
def portal_chat_admission(portal, actor, model, target, estimate):
    """Agents reached as models follow the same roles as runs under ``/agents``."""
    state = portal.extensions[NAME]
    if target.backend is not state.backend:
        return
    graph = state.models.name_in(target.upstream_model)
    if graph is not None and not state.settings.may_run(actor, graph):
        raise PortalError(f"You may not use the model `{model}`.", status=403, code="model_forbidden")


@hookimpl
def portal_models(portal, actor):
    state = portal.extensions[NAME]
    if not state.models.exposed:
        return []
    return state.models.listed(graph for graph in state.client.graph_ids() if state.settings.may_run(actor, graph))


@hookimpl
def portal_health_checks(portal):
    state = portal.extensions[NAME]

    def check(portal):
        ok = state.client.call("GET", "/ok")
        if ok.status != 200 or not isinstance(ok.json, dict) or ok.json.get("ok") is not True:
            return {"status": "down", "detail": f"/ok answered HTTP {ok.status}"}
        info = state.client.call("GET", "/info")
        version = info.json.get("version") if isinstance(info.json, dict) else None
        return {"status": "up", "detail": f"langgraph-api {version or 'of unknown version'}",
                "version": version, "graphs": len(state.client.graph_ids())}

    return [HealthCheck(NAME, check, timeout=3.0, required=state.settings.required)]


# --- runs -------------------------------------------------------------------------------------------
def _run(portal, mode: str, thread_id: str | None = None):
    """Start a run (``stream``, ``wait`` or ``background``), on a thread the caller owns or stateless."""
    state, actor = portal.extensions[NAME], g.actor
    body = checked_run_body(json_body(required=True), actor, stateless=thread_id is None,
                            stream=mode == "stream")
    base = "/runs" if thread_id is None else f"/threads/{threads.prepare_thread(portal, actor, thread_id, body)}/runs"
    graph = state.client.graph_id(body["assistant_id"], request_id=g.request_id)
    run = agent_run(portal, actor, graph, mode == "stream", thread_id, g.request_id, body)
    if mode == "stream":
        return stream_run(portal, run, base + "/stream", body, g.request_id)
    if mode == "wait":
        return wait_run(portal, run, base + "/wait", body, g.request_id)
    return background_run(portal, run, base, base + "/{run_id}/join", body, g.request_id)


def _thread_run_part(portal, thread_id, run_id, part: str | None, method: str):
    quoted = threads.check_thread(portal, g.actor, thread_id)
    path = f"/threads/{quoted}/runs/{segment(run_id, 'run')}" + (f"/{part}" if part else "")
    if part == "stream":
        return forward_stream(portal, path)
    return forward(portal, method, path, json_body() if method == "POST" else None)


@hookimpl
def portal_register_routes(portal):
    def view(name, func, **fixed):
        return bound_view(portal, name, func, **fixed)

    A = "/agents"
    user, admin = "user", "admin"
    routes = [
        # assistants: everyone may read those of graphs they may run; admins change them
        Route(f"{A}/assistants/search", view("assistants_search", assistants.search), ("POST",), user),
        Route(f"{A}/assistants/count", view("assistants_count", assistants.count), ("POST",), user),
        Route(f"{A}/assistants", view("assistants_create", assistants.create), ("POST",), admin),
        Route(f"{A}/assistants/<assistant_id>", view("assistant_get", assistants.read, part=None),
              ("GET",), user),
        Route(f"{A}/assistants/<assistant_id>", view("assistant_change", assistants.change),
              ("PATCH", "DELETE"), admin, name="assistant_change"),
        Route(f"{A}/assistants/<assistant_id>/latest", view("assistant_latest", assistants.latest),
              ("POST",), admin),
        Route(f"{A}/assistants/<assistant_id>/versions", view("assistant_versions", assistants.versions),
              ("POST",), user),
    ]
    for part in assistants.READ_PARTS:
        routes.append(Route(f"{A}/assistants/<assistant_id>/{part}",
                            view(f"assistant_{part}", assistants.read, part=part), ("GET",), user))
    routes += [
        # threads: each the caller's own
        Route(f"{A}/threads", view("threads_create", threads.create_thread), ("POST",), user),
        Route(f"{A}/threads/search", view("threads_search", threads.search_threads), ("POST",), user),
        Route(f"{A}/threads/count", view("threads_count", threads.count_threads), ("POST",), user),
        Route(f"{A}/threads/<thread_id>", view("thread", threads.one_thread), ("GET", "PATCH", "DELETE"), user),
        Route(f"{A}/threads/<thread_id>/state", view("thread_state_get", threads.thread_part, part="state", method="GET"),
              ("GET",), user),
        Route(f"{A}/threads/<thread_id>/state", view("thread_state_update", threads.thread_part, part="state", method="POST"),
              ("POST",), user),
        Route(f"{A}/threads/<thread_id>/state/checkpoint",
              view("thread_state_checkpoint", threads.thread_part, part="state/checkpoint", method="POST"), ("POST",), user),
        Route(f"{A}/threads/<thread_id>/state/<checkpoint_id>",
              view("thread_state_at", threads.thread_part, part="state", method="GET"), ("GET",), user),
        Route(f"{A}/threads/<thread_id>/history", view("thread_history_get", threads.thread_part, part="history", method="GET"),
              ("GET",), user),
        Route(f"{A}/threads/<thread_id>/history",
              view("thread_history_post", threads.thread_part, part="history", method="POST"), ("POST",), user),
        Route(f"{A}/threads/<thread_id>/copy", view("thread_copy", threads.thread_part, part="copy", method="POST"),
              ("POST",), user),
        # runs on a thread, and stateless runs
        Route(f"{A}/threads/<thread_id>/runs", view("thread_run_create", _run, mode="background"), ("POST",), user),
        Route(f"{A}/threads/<thread_id>/runs", view("thread_runs_list", threads.thread_part, part="runs", method="GET"),
              ("GET",), user),
        Route(f"{A}/threads/<thread_id>/runs/stream", view("thread_run_stream", _run, mode="stream"), ("POST",), user),
        Route(f"{A}/threads/<thread_id>/runs/wait", view("thread_run_wait", _run, mode="wait"), ("POST",), user),
        Route(f"{A}/threads/<thread_id>/runs/<run_id>", view("thread_run_get", _thread_run_part, part=None, method="GET"),
              ("GET",), user),
        Route(f"{A}/threads/<thread_id>/runs/<run_id>", view("thread_run_delete", _thread_run_part, part=None, method="DELETE"),
              ("DELETE",), user),
        Route(f"{A}/threads/<thread_id>/runs/<run_id>/join",
              view("thread_run_join", _thread_run_part, part="join", method="GET"), ("GET",), user),
        Route(f"{A}/threads/<thread_id>/runs/<run_id>/stream",
              view("thread_run_join_stream", _thread_run_part, part="stream", method="GET"), ("GET",), user),
        Route(f"{A}/threads/<thread_id>/runs/<run_id>/cancel",
              view("thread_run_cancel", _thread_run_part, part="cancel", method="POST"), ("POST",), user),
        Route(f"{A}/runs/stream", view("run_stream", _run, mode="stream"), ("POST",), user),
        Route(f"{A}/runs/wait", view("run_wait", _run, mode="wait"), ("POST",), user),
    ]
    return routes
