"""OpenAI-compatible chat: ``/v1/chat/completions``, ``/v1/models``, the seed's paths and ``/ws/chat``.

The routes are generic; which upstream serves a model comes from the ``portal_chat_backend``
hook (the ``litellm`` and ``openai_compat`` plugins, or this plugin's own ``models`` map).
Modules: ``body`` (what a request may carry), ``models`` (which model a name reaches, who may
call it), ``upstream`` (retries, fallbacks, failures), ``call`` (one call and its record),
``ws`` (the WebSocket route); tokens the upstream never reported are counted by ``agent_portal.counting``.
"""
from __future__ import annotations

from flask import Response, g, request

from agent_portal import ChatTarget, HealthCheck, ModelInfo, Route, hookimpl
from agent_portal.schemas import SSE, SSE_EVENT, STRING, array, obj
from agent_portal.sse import STREAM_HEADERS

from .body import CHAT_BODY_SCHEMA, read_chat_body
from .call import ChatCall, ChatState
from .models import model_catalog, resolve, visible_models
from .settings import NAME, ChatSettings, config_schema
from .upstream import UpstreamFailure, failure_response
from .ws import websocket_chat

CHAT_STREAM_HEADERS = {**STREAM_HEADERS, "Connection": "keep-alive"}


@hookimpl
def portal_config_schema():
    return {NAME: config_schema()}


@hookimpl
def portal_startup(portal):
    wants_payloads = any(portal.hook.portal_wants_payloads(portal=portal))
    portal.extensions[NAME] = ChatState(ChatSettings(portal.plugin_config(NAME)), wants_payloads,
                                        portal.settings.get("redis_url"), portal.actor_groups)


@hookimpl(tryfirst=True)
def portal_chat_backend(portal, model):
    """Serve the models of this plugin's ``models`` map through the backend each names."""
    entry = portal.extensions[NAME].settings.models.get(model)
    if entry is None:
        return None
    upstream = entry.get("model", model)
    for backends in portal.hook.portal_backends(portal=portal):
        for backend in backends or []:
            if backend.name == entry["backend"] and upstream in backend.model_ids():
                return ChatTarget(model=model, backend=backend, upstream_model=upstream,
                                  fallbacks=tuple(entry.get("fallbacks", ())),
                                  input_cost_per_token=entry.get("input_cost_per_token"),
                                  output_cost_per_token=entry.get("output_cost_per_token"))
    return None


@hookimpl
def portal_chat_target(portal, actor, model):
    """Where ``model`` goes for ``actor``, with this plugin's roles: 403 or 404 as chat answers."""
    return resolve(portal, portal.extensions[NAME].rules, actor, model)


@hookimpl
def portal_health_checks(portal):
    """The circuit of every upstream target that failed lately: degraded while one is open."""
    breaker = portal.extensions[NAME].breaker

    def circuits(portal):
        targets = breaker.report()
        opened = sorted(k for k, v in targets.items() if v["state"] in ("open", "probing"))
        detail = f"open: {', '.join(opened)}" if opened else "every circuit closed"
        away = breaker.outage.state()
        if away is not None:
            detail = f"shared state unavailable {breaker.outage.describe()}; this worker's own: {detail}"
        return {"status": "degraded" if opened or away else "up", "detail": detail, "targets": targets}

    return [HealthCheck("circuits", circuits, timeout=2.0)]


@hookimpl
def portal_models(portal, actor):
    return [ModelInfo(id=name, backend=entry["backend"])
            for name, entry in portal.extensions[NAME].settings.models.items()]


def chat_call(portal, force_stream: bool | None = None):
    """Serve one chat request, streamed or not; every outcome yields one chat record."""
    body = read_chat_body()
    stream = force_stream if force_stream is not None else body.get("stream", False)
    session_id = request.headers.get("X-Session-Id") or request.headers.get("X-OpenWebUI-Chat-Id")
    call = ChatCall(portal, g.actor, body, stream, session_id, g.request_id)
    try:
        call.open()
    except UpstreamFailure as failure:
        return failure_response(failure)
    if not stream:
        payload, headers = call.plain_answer()
        return Response(payload, status=200, mimetype="application/json", headers=headers)
    headers = {**CHAT_STREAM_HEADERS, **call.target.backend.passed_headers(call.response)}
    return Response(call.relay(), status=200, mimetype="text/event-stream", headers=headers,
                    direct_passthrough=True)


# What chat answers: OpenAI's chat completion object, or its stream of chunks.
CHAT_COMPLETION = obj("object", "choices", id=STRING, object={"const": "chat.completion"}, model=STRING,
                      choices=array(obj("index", index={"type": "integer"}, message={"type": "object"})),
                      usage={"type": ["object", "null"]})
CHAT_ANSWERS = {"200": {"content": {"application/json": {"schema": CHAT_COMPLETION},
                                    "text/event-stream": {"schema": SSE_EVENT}}}}
PRICE = {"type": ["number", "null"]}
MODEL_CATALOG = obj("data", data=array(obj(
    "model", "backend", "upstream_model", "roles", "fallbacks", model=STRING, backend=STRING, upstream_model=STRING,
    roles=array(STRING), input_cost_per_token=PRICE, output_cost_per_token=PRICE, fallbacks=array(STRING),
    alias={"type": "boolean"}, supports_prefill={"type": ["boolean", "null"]})))
MODEL_LIST = obj("object", "data", object={"const": "list"},
                 data=array(obj("id", "object", id=STRING, object=STRING, owned_by=STRING)))


@hookimpl
def portal_register_routes(portal):
    def chat_completions():
        return chat_call(portal)

    def chat_stream():
        return chat_call(portal, force_stream=True)

    def models():
        return {"object": "list", "data": visible_models(portal, portal.extensions[NAME].rules, g.actor)}

    def catalog():
        """Every model with its backend, roles, prices and fallbacks"""
        state = portal.extensions[NAME]
        return {"data": model_catalog(portal, state.rules, state.prefills)}

    def ws_chat(ws):
        websocket_chat(portal, ws)

    ws_chat.auth_in_first_message = True
    return [
        Route("/v1/chat/completions", chat_completions, methods=("POST",), access="user",
              schema=CHAT_BODY_SCHEMA, responses=CHAT_ANSWERS,
              summary="A chat completion, streamed or not (OpenAI's API)"),
        Route("/chat/completions", chat_completions, methods=("POST",), access="user",
              name="chat_completions_seed", schema=CHAT_BODY_SCHEMA, responses=CHAT_ANSWERS,
              summary="The same, at the seed's path"),
        Route("/chat/stream", chat_stream, methods=("POST",), access="user", schema=CHAT_BODY_SCHEMA,
              responses={"200": SSE}, summary="A chat completion, always streamed"),
        Route("/v1/models", models, access="user", responses={"200": MODEL_LIST}),
        Route("/admin/models", catalog, access="admin", responses={"200": MODEL_CATALOG}),
        Route("/ws/chat", ws_chat, access="user", websocket=True),
    ]
