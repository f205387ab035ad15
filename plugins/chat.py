"""OpenAI-compatible chat: ``/v1/chat/completions``, ``/v1/models``, the seed's paths and ``/ws/chat``.

The routes are generic; which upstream serves a model comes from the ``portal_chat_backend``
hook (the ``litellm`` and ``openai_compat`` plugins, or this plugin's own ``models`` map).
"""
from __future__ import annotations

import json
import logging
import time

import urllib3
from flask import Response, g, request
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

from agent_portal import ChatRecord, ChatTarget, PortalError, Route, hookimpl
from agent_portal.sse import StreamState, close_upstream, relay

log = logging.getLogger("agent_portal.chat")
NAME = "chat"
RETRYABLE = {429, 500, 502, 503, 504}
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
_NUMBER = (int, float)


@hookimpl
def portal_config_schema():
    model = {
        "type": "object",
        "additionalProperties": False,
        "required": ["backend"],
        "properties": {
            "backend": {"type": "string"},
            "model": {"type": "string"},
            "fallbacks": {"type": "array", "items": {"type": "string"}},
            "input_cost_per_token": {"type": "number", "minimum": 0},
            "output_cost_per_token": {"type": "number", "minimum": 0},
            "roles": {"type": "array", "items": {"enum": ["user", "admin"]}},
        },
    }
    return {NAME: {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "connect_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
            "first_byte_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 60},
            "between_chunks_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 60},
            "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 15},
            "retries": {"type": "integer", "minimum": 0, "maximum": 5, "default": 2},
            "retry_max_wait_seconds": {"type": "number", "minimum": 0, "default": 5},
            "capture_payloads": {"type": "boolean", "default": False},
            "models": {"type": "object", "additionalProperties": model, "default": {}},
        },
    }}


class ChatSettings:
    """This plugin's section, read once at startup."""

    def __init__(self, section: dict):
        self.connect = section["connect_timeout_seconds"]
        self.first_byte = section["first_byte_timeout_seconds"]
        self.between_chunks = section["between_chunks_timeout_seconds"]
        self.heartbeat = min(section["heartbeat_seconds"], self.between_chunks)
        self.retries = section["retries"]
        self.retry_max_wait = section["retry_max_wait_seconds"]
        self.capture = section["capture_payloads"]
        self.models = section["models"]
        self.stream_timeout = urllib3.Timeout(connect=self.connect,
                                              read=max(self.first_byte, self.between_chunks))
        self.plain_timeout = urllib3.Timeout(connect=self.connect, read=self.first_byte)


@hookimpl
def portal_startup(portal):
    settings = ChatSettings(portal.plugin_config(NAME))
    portal.extensions[NAME] = settings


@hookimpl(tryfirst=True)
def portal_chat_backend(portal, model):
    """Serve the models of this plugin's ``models`` map through the backend each names."""
    entry = portal.extensions[NAME].models.get(model)
    if entry is None:
        return None
    upstream = entry.get("model", model)
    for impl in portal.hook.portal_chat_backend.get_hookimpls():
        if impl.plugin_name == NAME:
            continue
        target = impl.function(portal=portal, model=upstream)
        if target is not None and target.backend.name == entry["backend"]:
            return ChatTarget(model=model, backend=target.backend, upstream_model=target.upstream_model,
                              fallbacks=tuple(entry.get("fallbacks", ())),
                              input_cost_per_token=entry.get("input_cost_per_token"),
                              output_cost_per_token=entry.get("output_cost_per_token"))
    return None


def may_use(portal, actor, model: str) -> bool:
    """Return True when ``actor`` may use the public model ``model``."""
    entry = portal.extensions[NAME].models.get(model)
    return entry is None or "roles" not in entry or actor.role in entry["roles"]


# --- request checking ---------------------------------------------------------------------------


def read_chat_body() -> dict:
    """Return the checked JSON body of the current chat request (see :func:`check_chat_body`)."""
    return check_chat_body(request.get_data(cache=False))


def check_chat_body(raw) -> dict:
    """Return the checked chat body parsed from ``raw``; raise a 400 :class:`PortalError` otherwise."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PortalError("The request body is not valid JSON.", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise PortalError("The request body must be a JSON object.", code="invalid_body")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise PortalError("'model' is required and must be a non-empty string.", code="missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise PortalError("'messages' is required and must be a non-empty array.", code="missing_messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise PortalError(f"messages[{i}] must be an object with a string 'role'.", code="invalid_messages")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise PortalError("'stream' must be true or false.", code="invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise PortalError("'stream_options' must be an object.", code="invalid_type")
    for key in ("temperature", "top_p", "max_tokens", "max_completion_tokens", "n"):
        if key in body and body[key] is not None and (
                not isinstance(body[key], _NUMBER) or isinstance(body[key], bool)):
            raise PortalError(f"'{key}' must be a number.", code="invalid_type")
    return body


def resolve(portal, actor, model: str) -> ChatTarget:
    """Return where ``model`` goes for ``actor``; 404 (OpenAI shape) when nobody serves it."""
    target = portal.hook.portal_chat_backend(portal=portal, model=model)
    if target is None:
        raise PortalError(f"The model `{model}` does not exist or is not served here.", status=404,
                          code="model_not_found", type="invalid_request_error")
    if not may_use(portal, actor, model):
        raise PortalError(f"You may not use the model `{model}`.", status=403, code="model_forbidden")
    return target


# --- talking to the upstream ---------------------------------------------------------------------


class UpstreamFailure(Exception):
    """Every attempt on every fallback failed before the first byte."""

    def __init__(self, status: int, message: str, code: str, headers=None, body=None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = body


def _retry_after(response, cap: float, attempt: int) -> float:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        wait = float(value) if value is not None else 0.1 * (2 ** attempt)
    except ValueError:
        wait = 0.1 * (2 ** attempt)
    return max(0.0, min(wait, cap))


def open_upstream(portal, settings: ChatSettings, targets: list, build_payload, stream: bool):
    """Send the call to the first target that answers, with retries before the first byte.

    Returns ``(response, target, first_block, ttft_mark)``; ``first_block`` is the first bytes
    of a stream (b"" when not streaming). Raises :class:`UpstreamFailure` when all fail; an
    upstream 4xx (other than 429) is final and raised at once with its body.
    """
    last = UpstreamFailure(502, "No upstream could be reached.", "upstream_unreachable")
    timeout = settings.stream_timeout if stream else settings.plain_timeout
    for target in targets:
        body = json.dumps(build_payload(target)).encode()
        headers = target.backend.request_headers(g.request_id, g.actor)
        for attempt in range(settings.retries + 1):
            response = None
            try:
                response = target.backend.chat_pool.urlopen(
                    "POST", target.backend.chat_path, body=body, headers=headers, timeout=timeout,
                    preload_content=not stream, retries=False, redirect=False, assert_same_host=False)
                if response.status in RETRYABLE:
                    payload = response.data
                    last = UpstreamFailure(429 if response.status == 429 else 502,
                                           _upstream_message(payload, response.status),
                                           "upstream_rate_limited" if response.status == 429 else "upstream_error",
                                           headers={"Retry-After": response.headers["Retry-After"]}
                                           if "Retry-After" in response.headers else None)
                    wait = _retry_after(response, settings.retry_max_wait, attempt)
                    close_upstream(response)
                    if attempt < settings.retries:
                        time.sleep(wait)
                    continue
                if response.status in (401, 403):
                    payload = response.data
                    close_upstream(response)
                    # the caller's credentials are fine; the portal's own upstream key is not
                    raise UpstreamFailure(502, "The upstream refused the portal's credentials: "
                                          + _upstream_message(payload, response.status), "upstream_auth_failed")
                if response.status >= 400:
                    payload = response.data
                    close_upstream(response)
                    raise UpstreamFailure(response.status, _upstream_message(payload, response.status),
                                          "upstream_client_error", body=payload)
                if not stream:
                    return response, target, b"", time.monotonic()
                first = response.read1(65536)
                if not first:
                    close_upstream(response)
                    last = UpstreamFailure(502, "The upstream closed the stream before any data.",
                                           "upstream_empty")
                    continue
                return response, target, first, time.monotonic()
            except UpstreamFailure:
                raise
            except NewConnectionError as exc:  # a subclass of ConnectTimeoutError: refused is not slow
                last = UpstreamFailure(502, f"The upstream refused the connection ({exc.__class__.__name__}).",
                                       "upstream_unreachable")
            except (ReadTimeoutError, ConnectTimeoutError, TimeoutError) as exc:
                last = UpstreamFailure(504, f"The upstream did not answer in time ({exc.__class__.__name__}).",
                                       "upstream_timeout")
            except (HTTPError, OSError) as exc:
                last = UpstreamFailure(502, f"The upstream refused or reset the connection ({exc.__class__.__name__}).",
                                       "upstream_unreachable")
            if response is not None:
                close_upstream(response)
            if attempt < settings.retries:
                time.sleep(_retry_after(None, settings.retry_max_wait, attempt))
    raise last


def _upstream_message(payload: bytes, status: int) -> str:
    try:
        data = json.loads(payload)
        error = data.get("error", data.get("detail"))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error:
            return str(error)
    except (ValueError, AttributeError, TypeError):
        pass
    return f"The upstream answered HTTP {status}."


def failure_response(failure: UpstreamFailure) -> Response:
    """Return the caller's answer for a failure before the first byte (OpenAI error shape)."""
    if failure.body is not None:
        try:
            data = json.loads(failure.body)
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                return Response(failure.body, status=failure.status, mimetype="application/json")
        except ValueError:
            pass
    raise PortalError(failure.message, status=failure.status, code=failure.code,
                      headers=failure.headers, type="upstream_error")


# --- the call ------------------------------------------------------------------------------------


def price(target: ChatTarget, usage: dict | None, upstream_cost) -> float:
    """Return the call's cost: the upstream's when it sent one, else the config's prices."""
    if upstream_cost is not None:
        try:
            return float(upstream_cost)
        except (TypeError, ValueError):
            pass
    if not usage or target.input_cost_per_token is None and target.output_cost_per_token is None:
        return 0.0
    return (int(usage.get("prompt_tokens") or 0) * (target.input_cost_per_token or 0.0)
            + int(usage.get("completion_tokens") or 0) * (target.output_cost_per_token or 0.0))


class ChatCall:
    """One chat call under way: its record, the upstream answer and how it was reached."""

    def __init__(self, portal, actor, body: dict, stream: bool, session_id: str | None):
        self.portal = portal
        self.settings: ChatSettings = portal.extensions[NAME]
        self.started = time.monotonic()
        self.body, self.stream, self.actor = body, stream, actor
        self.client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.capture = self.settings.capture or portal.wants_payloads
        self.record = ChatRecord(request_id=g.request_id, actor_id=actor.id, actor_role=actor.role,
                                 model=body["model"], stream=stream, key_id=actor.key_id,
                                 session_id=session_id, started_at=time.time(),
                                 messages=body["messages"] if self.capture else None)
        self.target = self.response = None
        self.first_block, self.first_at, self.header_cost = b"", None, None

    def build_payload(self, target: ChatTarget) -> dict:
        payload = dict(self.body)
        payload["model"] = target.upstream_model
        if self.stream:
            payload["stream"] = True
            payload["stream_options"] = {**(self.body.get("stream_options") or {}), "include_usage": True}
        target.backend.attribute(payload, self.actor, g.request_id, self.record.session_id)
        return payload

    def open(self) -> None:
        """Reach an upstream; raises :class:`UpstreamFailure` after recording the failed call."""
        target = resolve(self.portal, self.actor, self.body["model"])
        try:
            self.portal.hook.portal_chat_admission(portal=self.portal, actor=self.actor,
                                                   model=self.body["model"])
        except PortalError as refusal:
            self.record.outcome, self.record.status = "refused", refusal.status
            self.record.error = refusal.message
            self.finish()
            raise
        targets = [target] + [t for t in (self.portal.hook.portal_chat_backend(portal=self.portal, model=m)
                                          for m in target.fallbacks) if t is not None]
        try:
            self.response, self.target, self.first_block, self.first_at = open_upstream(
                self.portal, self.settings, targets, self.build_payload, self.stream)
        except UpstreamFailure as failure:
            self.record.outcome, self.record.status = failure.code, failure.status
            self.record.error = failure.message
            self.finish()
            raise
        self.record.backend = self.target.backend.name
        self.record.upstream_model = self.target.upstream_model
        self.record.upstream_call_id = self.response.headers.get("x-litellm-call-id")
        self.header_cost = self.response.headers.get("x-litellm-response-cost")
        self.record.ttft = self.first_at - self.started

    def finish(self) -> None:
        """Close the record's timing and hand it to ``portal_chat_completed`` (off the request path)."""
        self.record.duration = time.monotonic() - self.started
        self.portal.dispatcher.submit(self.record)

    def relay(self):
        """Return the generator of the client's SSE bytes; the record is sent when it ends."""
        state = StreamState(strip_usage=not self.client_wants_usage, capture_text=self.capture)
        record = self.record

        def on_end(state: StreamState):
            usage = state.usage or {}
            record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            record.completion_tokens = int(usage.get("completion_tokens") or 0)
            cost = state.cost if state.cost is not None else self.header_cost
            record.cost = price(self.target, usage, cost)
            record.partial = state.usage is None or state.outcome != "ok"
            record.outcome = state.outcome
            if state.outcome != "ok":
                record.status = 499 if state.outcome == "client_disconnected" else 502
            error = state.error
            record.error = error if error is None or isinstance(error, str) else json.dumps(error)
            record.upstream_call_id = record.upstream_call_id or state.call_id
            record.output = "".join(state.text) if state.text is not None else None
            self.finish()

        return relay(self.response, self.first_block, state, self.settings.heartbeat,
                     self.settings.between_chunks, on_end)


def chat_call(portal, force_stream: bool | None = None):
    """Serve one chat request, streamed or not; every outcome yields one chat record."""
    body = read_chat_body()
    stream = force_stream if force_stream is not None else body.get("stream", False)
    session_id = request.headers.get("X-Session-Id") or request.headers.get("X-OpenWebUI-Chat-Id")
    call = ChatCall(portal, g.actor, body, stream, session_id)
    try:
        call.open()
    except UpstreamFailure as failure:
        return failure_response(failure)
    if not stream:
        return _plain_answer(call)
    headers = dict(STREAM_HEADERS)
    if call.record.upstream_call_id:
        headers["x-litellm-call-id"] = call.record.upstream_call_id
    return Response(call.relay(), status=200, mimetype="text/event-stream", headers=headers,
                    direct_passthrough=True)


def _plain_answer(call: ChatCall) -> Response:
    record, response = call.record, call.response
    payload = response.data
    try:
        data = json.loads(payload)
        usage = data.get("usage") or {}
        record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        record.completion_tokens = int(usage.get("completion_tokens") or 0)
        cost = call.header_cost if call.header_cost is not None else usage.get("cost")
        record.cost = price(call.target, usage, cost)
        record.upstream_call_id = record.upstream_call_id or data.get("id")
        if record.messages is not None:
            record.output = "".join((c.get("message") or {}).get("content") or ""
                                    for c in data.get("choices") or [] if isinstance(c, dict))
    except (ValueError, AttributeError, TypeError):
        record.outcome, record.status, record.partial = "upstream_malformed", 502, True
        record.error = "the upstream answered with something other than a JSON object"
        call.finish()
        raise PortalError("The upstream answered with something other than JSON.", status=502,
                          code="upstream_malformed", type="upstream_error")
    call.finish()
    headers = {}
    if response.headers.get("x-litellm-call-id"):
        headers["x-litellm-call-id"] = response.headers["x-litellm-call-id"]
    return Response(payload, status=200, mimetype="application/json", headers=headers)


# --- routes --------------------------------------------------------------------------------------


def list_models(portal, actor) -> list[dict]:
    """Return the OpenAI model objects ``actor`` may use, each once."""
    seen, data = set(), []
    for answer in portal.hook.portal_models(portal=portal, actor=actor):
        for info in answer or []:
            if info.id in seen or not may_use(portal, actor, info.id):
                continue
            seen.add(info.id)
            data.append({"id": info.id, "object": "model", "created": 0, "owned_by": info.owned_by})
    return data


@hookimpl
def portal_models(portal, actor):
    from agent_portal import ModelInfo

    return [ModelInfo(id=name, backend=entry["backend"])
            for name, entry in portal.extensions[NAME].models.items()]


@hookimpl
def portal_register_routes(portal):
    def chat_completions():
        return chat_call(portal)

    def chat_stream():
        return chat_call(portal, force_stream=True)

    def models():
        return {"object": "list", "data": list_models(portal, g.actor)}

    from .chat_ws import websocket_chat

    def ws_chat(ws):
        websocket_chat(portal, ws)

    ws_chat.auth_in_first_message = True
    return [
        Route("/v1/chat/completions", chat_completions, methods=("POST",), access="user"),
        Route("/chat/completions", chat_completions, methods=("POST",), access="user",
              name="chat_completions_seed"),
        Route("/chat/stream", chat_stream, methods=("POST",), access="user"),
        Route("/v1/models", models, access="user"),
        Route("/ws/chat", ws_chat, access="user", websocket=True),
    ]
