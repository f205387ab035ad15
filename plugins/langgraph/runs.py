"""Runs through the portal: admitted like chat calls, relayed as they stream, one record each.

A run's record has backend ``langgraph`` and model ``agent:<graph_id>``; its tokens are what the
graph's models reported (``usage_metadata``), else counted from the input and the answer's text.
"""
from __future__ import annotations

import json
import logging
import threading

from flask import Response

from agent_portal import PortalError
from agent_portal.metering import MeteredCall, stream_status
from agent_portal.sse import STREAM_HEADERS, relay

from .client import Answer, refuse_bad_key
from .events import LangGraphEvents, RunMeter, RunStreamState, message_text
from .settings import NAME

log = logging.getLogger("agent_portal.langgraph")
OWNER = "portal_owner"


def input_text(run_input) -> str:
    """Return the text a run's input carries: its messages' text, else the input as JSON."""
    if isinstance(run_input, dict) and isinstance(run_input.get("messages"), list):
        return "\n".join(message_text(m) if isinstance(m, dict) else str(m) for m in run_input["messages"])
    return "" if run_input is None else json.dumps(run_input)


STREAM_MODES = ("values", "messages", "messages-tuple", "updates", "events", "debug", "custom", "tasks",
                "checkpoints")
METERED_MODE = "values"  # the first state and every later one: the run's new messages, with their usage


def stream_modes(body: dict) -> list[str]:
    """Return the stream modes a run body asks for (the server's default is ``values``); 400
    for anything but one of the server's modes or a list of them."""
    modes = body.get("stream_mode", "values")
    modes = [modes] if isinstance(modes, str) else modes
    if not isinstance(modes, list) or not modes or any(m not in STREAM_MODES for m in modes):
        raise PortalError(f"`stream_mode` is one of {', '.join(STREAM_MODES)}, or a list of them.", status=400,
                          code="invalid_run")
    return modes


def with_metered_mode(body: dict) -> tuple[dict, str | None]:
    """Return the body to stream with, and the mode the portal added for its meter (None when
    the caller asked for it): whatever modes a caller picks, the meter sees the run's states,
    so every mode is billed from what the graph reported."""
    modes = stream_modes(body)
    if METERED_MODE in modes:
        return body, None
    return {**body, "stream_mode": [*modes, METERED_MODE]}, METERED_MODE


def checked_run_body(body, actor, stateless: bool, stream: bool) -> dict:
    """Return the run body to send: the caller's, checked, with the portal's owner stamped in its
    metadata. Refuses what would escape the portal's watch (400)."""
    if not isinstance(body, dict) or not isinstance(body.get("assistant_id"), str):
        raise PortalError("A run needs a JSON object with `assistant_id`.", status=400, code="invalid_run")
    if body.get("webhook") is not None and actor.role != "admin":
        raise PortalError("`webhook` is for admins: the agent server would call any URL it is given.",
                          status=400, code="webhook_not_allowed")
    if stream and body.get("on_disconnect") == "continue":
        raise PortalError("`on_disconnect: continue` would leave a run going that nobody meters; "
                          "start a background run instead.", status=400, code="invalid_run")
    if stateless and body.get("on_completion") == "keep" and actor.role != "admin":
        raise PortalError("`on_completion: keep` would keep a thread without an owner; create a "
                          "thread and run on it instead.", status=400, code="invalid_run")
    stream_modes(body)
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    checked = {**body, "metadata": {**metadata, OWNER: actor.id}}
    if stream:  # the server's default for a run on a thread is to go on when the client leaves
        checked["on_disconnect"] = "cancel"
    return checked


def agent_run(portal, actor, graph_id: str, stream: bool, thread_id, request_id: str, body: dict) -> MeteredCall:
    """Return the metered call of one run of ``graph_id``; 403 when the caller's role may not
    run that graph."""
    settings = portal.extensions[NAME].settings
    if not settings.may_run(actor, graph_id):
        raise PortalError(f"You may not run the agent `{graph_id}`.", status=403, code="agent_forbidden")
    return MeteredCall(portal, actor, model=f"agent:{graph_id}", backend=portal.extensions[NAME].backend,
                       upstream_model=graph_id, stream=stream, request_id=request_id,
                       prompt_text=input_text(body.get("input")), session_id=thread_id,
                       prices=settings.prices(graph_id),
                       reserve_completion_tokens=settings.reserve_completion_tokens)


def end_run(run: MeteredCall, outcome: str, status: int, error=None, meter: RunMeter | None = None) -> None:
    """End ``run``'s record with what ``meter`` saw (its usage, else its answer's text)."""
    meter = meter or RunMeter()
    run.end(outcome, status, error, usage=meter.usage(), answer_text=meter.answer_text(),
            upstream_call_id=meter.run_id)


def _failed_answer(run: MeteredCall, answer: Answer) -> Response:
    """Record a run the server refused (HTTP >= 400) and answer the caller with its reason."""
    refuse_bad_key_recorded(run, answer)
    detail = answer.json.get("detail") if isinstance(answer.json, dict) else None
    if answer.status >= 500:
        end_run(run, "upstream_error", 502, detail or f"HTTP {answer.status}")
        raise PortalError(f"The agent server failed: {detail or answer.status}.", status=502,
                          code="upstream_error", type="upstream_error")
    end_run(run, "upstream_client_error", answer.status, detail or f"HTTP {answer.status}")
    return Response(answer.body, status=answer.status, mimetype="application/json")


def refuse_bad_key_recorded(run: MeteredCall, answer: Answer) -> None:
    try:
        refuse_bad_key(answer)
    except PortalError as refusal:
        end_run(run, refusal.code, refusal.status, refusal.message)
        raise


def stream_run(portal, run: MeteredCall, path: str, body: dict, request_id: str) -> Response:
    """Start a streamed run at ``path`` and relay its events as they come; the record is sent
    when the stream ends, however it ends."""
    state = portal.extensions[NAME]
    body, hidden = with_metered_mode(body)
    run.admit()
    try:
        response = state.client.open("POST", path, body, timeout=state.settings.stream_timeout,
                                     stream=True, request_id=request_id)
    except PortalError as failure:
        end_run(run, failure.code, failure.status, failure.message)
        raise
    if response.status != 200:
        answer = Answer(response.status, response.data, response.headers)
        return _failed_answer(run, answer)
    stream_state = RunStreamState(hidden)

    def on_end(stream_state: RunStreamState):
        if stream_state.first_at is not None:
            run.record.ttft = stream_state.first_at - run.started
        end_run(run, stream_state.outcome, stream_status(stream_state.outcome), stream_state.error,
                stream_state.meter)

    settings = state.settings
    return Response(relay(response, b"", stream_state, settings.heartbeat, settings.between_events, on_end,
                          portal.live_streams, events=LangGraphEvents),
                    status=200, mimetype="text/event-stream", headers=STREAM_HEADERS, direct_passthrough=True)


def wait_run(portal, run: MeteredCall, path: str, body: dict, request_id: str) -> Response:
    """Run at ``path`` until it ends and answer its final values; a graph that raised (which the
    server answers with HTTP 200 and ``__error__``) is a 502 with the graph's message."""
    state = portal.extensions[NAME]
    run.admit()
    try:
        answer = state.client.call("POST", path, body, timeout=state.settings.run_timeout, request_id=request_id)
    except PortalError as failure:
        end_run(run, failure.code, failure.status, failure.message)
        raise
    if answer.status != 200:
        return _failed_answer(run, answer)
    return finished_run(run, answer)


def finished_run(run: MeteredCall, answer: Answer) -> Response:
    """Record a run whose final values ``answer`` holds; returns what the caller gets."""
    meter = RunMeter()
    values = answer.json
    error = values.get("__error__") if isinstance(values, dict) else None
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else str(error)
        end_run(run, "upstream_error", 502, error, meter)
        raise PortalError(f"The agent failed: {message}", status=502, code="agent_error", type="upstream_error")
    if isinstance(values, dict):
        meter.take_values(values, before_last_human=True)
    end_run(run, "ok", 200, None, meter)
    return Response(answer.body, status=200, mimetype="application/json")


def background_run(portal, run: MeteredCall, path: str, join_path: str, body: dict, request_id: str) -> Response:
    """Create a background run; a watcher joins it and records it when it ends."""
    state = portal.extensions[NAME]
    run.admit()
    try:
        answer = state.client.call("POST", path, body, request_id=request_id)
    except PortalError as failure:
        end_run(run, failure.code, failure.status, failure.message)
        raise
    if answer.status != 200 or not isinstance(answer.json, dict) or not answer.json.get("run_id"):
        return _failed_answer(run, answer) if answer.status != 200 else _malformed(run)
    run.record.upstream_call_id = answer.json["run_id"]

    def watch():
        try:
            joined = state.client.call("GET", join_path.format(run_id=answer.json["run_id"]),
                                       timeout=state.settings.run_timeout)
            if joined.status != 200:
                end_run(run, "upstream_error", 502, f"joining the run answered HTTP {joined.status}")
                return
            finished_run(run, joined)
        except PortalError as failure:  # an agent error was recorded already: end() does nothing then
            end_run(run, failure.code or "upstream_error", failure.status, failure.message)
        except Exception:  # the watcher must never die silently: the run is still recorded
            log.exception("langgraph: watching run %s failed", answer.json["run_id"])
            end_run(run, "upstream_error", 502, "the portal lost track of the run")

    threading.Thread(target=watch, name="langgraph-run-watch", daemon=True).start()
    return Response(answer.body, status=200, mimetype="application/json")


def _malformed(run: MeteredCall):
    end_run(run, "upstream_malformed", 502, "the agent server's answer was not a run")
    raise PortalError("The agent server's answer was not a run.", status=502, code="upstream_malformed",
                      type="upstream_error")
