"""Asking a notebook: an answer from the notebook's own sources and notes, metered like chat.

Open Notebook's ``/api/search/ask`` searches everything it holds, whoever put it there, so the
portal does not use it: an ask is a chat session of the notebook (``/api/chat/sessions``) given
the notebook's context (``/api/chat/context``), answered by ``/api/chat/execute``. Streamed, the
caller gets heartbeats while the answer is made, then ``event: answer`` and ``event: done``, or
``event: error``; not streamed, ``{answer, question}``.
"""
from __future__ import annotations

import json
import queue
import threading

from flask import Response, g

from agent_portal import PortalError
from agent_portal.metering import MeteredCall
from agent_portal.sse import DATA, FAILED, HEARTBEAT, SHUTDOWN, STREAM_HEADERS, sse_event

from .settings import NAME
from .views import _body, _text_field, owned_notebook



def answer_question(portal, notebook_id: str, question: str, actor, request_id: str) -> tuple[str, str]:
    """Return (answer, the context text the model read) for ``question`` on ``notebook_id``."""
    state = portal.extensions[NAME]
    client = state.client
    built = client.call("POST", "/api/chat/context", {"notebook_id": notebook_id, "context_config": {}},
                        request_id=request_id)
    context = built.get("context") if isinstance(built, dict) else None
    if not isinstance(context, dict):
        raise PortalError("Open Notebook built no context for the notebook.", status=502, code="upstream_malformed",
                          type="upstream_error")
    session = client.call("POST", "/api/chat/sessions", {"notebook_id": notebook_id, "title": "Asked through the portal"},
                          request_id=request_id)
    state.owners.add("session", session["id"], actor.id, notebook_id)
    result = client.call("POST", "/api/chat/execute", {"session_id": session["id"], "message": question,
                                                       "context": context},
                         timeout=state.settings.ask_timeout, request_id=request_id)
    messages = result.get("messages") if isinstance(result, dict) else None
    answers = [m.get("content") for m in messages or [] if isinstance(m, dict) and m.get("type") == "ai"]
    if not answers or not isinstance(answers[-1], str):
        raise PortalError("Open Notebook's chat answered without an answer.", status=502, code="upstream_malformed",
                          type="upstream_error")
    return answers[-1], json.dumps(context)


def ask(portal, notebook_id, simple: bool = False):
    state = portal.extensions[NAME]
    owned_notebook(portal, notebook_id)
    body = _body()
    question = _text_field(body, "question", True, state.settings.max_question_chars)
    stream = not simple and body.get("stream", True)
    if not isinstance(stream, bool):
        raise PortalError("`stream` must be true or false.", status=400, code="invalid_request")
    call = MeteredCall(portal, g.actor, model="notebook:ask", backend=state.backend, upstream_model="chat",
                       stream=stream, request_id=g.request_id, prompt_text=question, session_id=notebook_id,
                       prices=state.settings.prices, reserve_completion_tokens=state.settings.reserve_completion_tokens)
    call.admit()
    actor, request_id = g.actor, g.request_id
    if not stream:
        try:
            answer, context = answer_question(portal, notebook_id, question, actor, request_id)
        except PortalError as failure:
            call.end(failure.code or "upstream_error", failure.status, failure.message)
            raise
        call.prompt_text = question + "\n" + context
        call.end("ok", 200, answer_text=answer)
        return Response(json.dumps({"answer": answer, "question": question}), mimetype="application/json")
    return Response(_stream(portal, call, notebook_id, question, actor, request_id), mimetype="text/event-stream",
                    headers=STREAM_HEADERS, direct_passthrough=True)


def _stream(portal, call: MeteredCall, notebook_id: str, question: str, actor, request_id: str):
    """Yield heartbeats while the answer is made, then the answer; the record is sent however
    the stream ends (the client leaving, the portal shutting down)."""
    results: queue.Queue = queue.Queue()

    def work():
        try:
            results.put((DATA, answer_question(portal, notebook_id, question, actor, request_id)))
        except Exception as exc:  # handed to the stream, which records and reports it
            results.put((FAILED, exc))

    threading.Thread(target=work, name="notebook-ask", daemon=True).start()
    portal.live_streams.add(results)
    outcome, status, error, answer = "client_disconnected", 499, None, ""
    try:
        while True:
            try:
                kind, payload = results.get(timeout=portal.extensions[NAME].settings.heartbeat)
            except queue.Empty:
                yield HEARTBEAT
                continue
            break
        if kind == DATA:
            answer, context = payload
            call.prompt_text = question + "\n" + context
            outcome, status = "ok", 200
            yield sse_event("answer", {"content": answer})
            yield sse_event("done", {})
        elif kind == SHUTDOWN:
            outcome, status, error = "portal_shutdown", 503, "the portal shut down before the answer came"
            yield sse_event("error", {"error": "portal_shutdown", "message": "The portal is shutting down."})
        else:
            failure = payload if isinstance(payload, PortalError) else PortalError(
                f"{type(payload).__name__}: {payload}", status=502, code="upstream_error")
            outcome, status, error = failure.code or "upstream_error", failure.status, failure.message
            yield sse_event("error", {"error": outcome, "message": failure.message})
    finally:
        portal.live_streams.discard(results)
        call.end(outcome, status, error, answer_text=answer)
