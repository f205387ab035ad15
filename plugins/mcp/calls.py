"""One ``tools/call`` through the portal: allowed, admitted, sent upstream, answered (as JSON,
or as SSE with heartbeats and the server's progress), and recorded as one ledger row
(backend ``mcp``, model ``tool:<server>/<tool>``)."""
from __future__ import annotations

import json
import queue
import threading

from flask import Response, g

from agent_portal import PortalError
from agent_portal.metering import MeteredCall
from agent_portal.sse import HEARTBEAT, SHUTDOWN, STREAM_HEADERS

from .jsonrpc import FORBIDDEN, LIMITED, UPSTREAM_ERROR, RPCError, result, sse_event
from .upstream import Pending

ANSWER, NOTIFY = 10, 11  # what the upstream side puts on a call's queue (beside sse.SHUTDOWN)


class ToolBackend:
    """The backend named on a tool call's record."""

    name = "mcp"


TOOLS = ToolBackend()


def _outcome(error: RPCError) -> tuple[str, int]:
    """Return the record's outcome and status for a call that failed upstream."""
    code = (error.data or {}).get("code", "upstream_error")
    if code == "cancelled":
        return "client_disconnected", 499
    return (code, 504 if code == "upstream_timeout" else 502) if code.startswith(("upstream_", "result_")) \
        else ("upstream_error", 502)


def may_call(state, actor, server: str, tool: str) -> bool:
    """Return True when ``actor`` may call ``tool`` of ``server`` now (roles, users, the switch)."""
    settings = state.settings.servers[server]
    return settings.may_call(actor, tool) and state.switches.enabled(server, tool, settings.rule(tool).enabled)


def forbidden(server: str, tool: str) -> RPCError:
    return RPCError(FORBIDDEN, f"You may not call the tool `{tool}` of `{server}`, or it is switched off.",
                    {"code": "tool_forbidden"})


def call_tool(portal, state, actor, server: str, tool: str, params: dict, request_id, stream: bool) -> Response:
    """Answer ``tools/call`` of ``tool`` on ``server`` for ``actor``; raises :class:`RPCError`
    for a call refused before it starts (not allowed, switched off, limited)."""
    if not may_call(state, actor, server, tool):
        raise forbidden(server, tool)
    rule = state.settings.servers[server].rule(tool)
    call = MeteredCall(portal, actor, model=f"tool:{server}/{tool}", backend=TOOLS, upstream_model=tool,
                       stream=stream, request_id=g.request_id, prompt_text="", estimated_prompt_tokens=0,
                       reserve_completion_tokens=0, price_per_call=rule.price_per_call,
                       session_id=None)
    try:
        call.admit()
    except PortalError as refusal:
        code = FORBIDDEN if refusal.status == 403 else LIMITED
        raise RPCError(code, refusal.message, {"code": refusal.code, "status": refusal.status}) from None
    upstream = state.upstreams[server]
    upstream_params = {**params, "name": tool}
    if not stream:
        try:
            answer = upstream.request("tools/call", upstream_params)
        except RPCError as error:
            outcome, status = _outcome(error)
            call.end(outcome, status, error.message, usage=(0, 0))
            raise
        _end_ok(call, answer)
        return Response(json.dumps(result(request_id, answer)), mimetype="application/json")
    return Response(_streamed(portal, state, call, upstream, upstream_params, request_id), status=200,
                    mimetype="text/event-stream", headers=STREAM_HEADERS, direct_passthrough=True)


def _end_ok(call: MeteredCall, answer: dict) -> None:
    failed = answer.get("isError") is True  # the tool ran and says it failed: billed, marked
    call.end("tool_error" if failed else "ok", 200, "the tool reported an error" if failed else None, usage=(0, 0))


def _streamed(portal, state, call: MeteredCall, upstream, params: dict, request_id):
    """Yield the call's SSE: the server's notifications as they come, heartbeats while it works,
    then the answer. A client that leaves cancels the upstream request; a shutdown ends the
    stream with a JSON-RPC error. The call is recorded once, whatever the end."""
    events: queue.Queue = queue.Queue()
    pending = Pending(next(upstream.ids), on_message=lambda m: events.put((NOTIFY, m)))

    def work():
        try:
            events.put((ANSWER, upstream.request("tools/call", params, pending)))
        except RPCError as error:
            events.put((ANSWER, error))
        except Exception as exc:  # never leave the stream waiting
            events.put((ANSWER, RPCError(UPSTREAM_ERROR, f"The portal failed to call the tool ({type(exc).__name__}).")))

    portal.live_streams.add(events)
    worker = threading.Thread(target=work, daemon=True, name="mcp-tool-call")
    worker.start()
    ended = False
    try:
        while True:
            try:
                kind, payload = events.get(timeout=state.settings.heartbeat)
            except queue.Empty:
                yield HEARTBEAT
                continue
            if kind == NOTIFY:
                yield sse_event(payload)
            elif kind == SHUTDOWN:
                ended = True
                upstream.cancel(pending, "the portal is shutting down")
                call.end("portal_shutdown", 503, "the portal shut down during the call", usage=(0, 0))
                yield sse_event(RPCError(UPSTREAM_ERROR, "The portal is shutting down; call the tool again.",
                                         {"code": "portal_shutdown"}).answer(request_id))
                return
            elif kind == ANSWER:
                ended = True
                if isinstance(payload, RPCError):
                    outcome, status = _outcome(payload)
                    call.end(outcome, status, payload.message, usage=(0, 0))
                    yield sse_event(payload.answer(request_id))
                else:
                    _end_ok(call, payload)
                    yield sse_event(result(request_id, payload))
                return
    finally:
        portal.live_streams.discard(events)
        if not ended:  # the client left before the answer
            upstream.cancel(pending, "the client disconnected")
            call.end("client_disconnected", 499, "the client left before the tool answered", usage=(0, 0))
