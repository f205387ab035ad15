"""Agents as models: ``agent:<graph_id>`` on ``/v1/chat/completions`` runs the graph.

The chat plugin calls a backend's ``send_chat`` with an OpenAI chat body; this backend turns it
into a stateless run (``stream_mode`` ``messages-tuple`` and ``values``, the OpenAI messages as
the graph's ``messages`` input) and turns the run's events back into OpenAI chunks as they come,
so chat's admission, relay, counting and record apply to agents unchanged.
"""
from __future__ import annotations

import json
import time

from agent_portal.upstream import UpstreamFailure

from .events import RunMeter, parse_events
from .runs import OWNER
from .settings import NAME

PREFIX = "agent:"


def graph_messages(messages: list) -> list:
    """Return OpenAI messages as the LangGraph input's messages (role and content are kept)."""
    converted = []
    for message in messages:
        item = {"role": message.get("role"), "content": message.get("content") or ""}
        if message.get("role") == "tool" and message.get("tool_call_id"):
            item["tool_call_id"] = message["tool_call_id"]
        converted.append(item)
    return converted


class AgentStream:
    """A LangGraph run stream read as an OpenAI chat stream: ``read1`` returns OpenAI SSE bytes
    (a role chunk, content chunks, a final chunk, usage, ``[DONE]``; an error object when the
    graph raised). Everything else is the underlying response's."""

    def __init__(self, response, model: str):
        self.response = response
        self.model = model
        self.meter = RunMeter()
        self.buffer = b""
        self.out: list[bytes] = []
        self.finished = False
        self.failure: str | None = None  # why the answer is incomplete, when it is
        self.created = int(time.time())
        self.status, self.headers = 200, {}

    # the surface the relay and the pool use
    @property
    def connection(self):
        return getattr(self.response, "connection", None)

    def close(self):
        self.response.close()

    def release_conn(self):
        self.response.release_conn()

    def read1(self, amt: int = 65536) -> bytes:
        while not self.out:
            if self.finished:
                return b""
            data = self.response.read1(amt)
            if not data:
                self._end()
                break
            self._take(data)
        out, self.out = b"".join(self.out), []
        return out

    def _chunk(self, delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> None:
        chunk = {"id": f"chatcmpl-{self.meter.run_id or 'agent'}", "object": "chat.completion.chunk",
                 "created": self.created, "model": self.model,
                 "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            chunk["usage"] = usage
        self.out.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    def _error(self, message: str, code: str) -> None:
        error = {"error": {"message": message, "type": "upstream_error", "code": code}}
        self.out.append(b"data: " + json.dumps(error).encode() + b"\n\n")
        self.failure, self.finished = message, True

    def _take(self, data: bytes) -> None:
        self.buffer = (self.buffer + data).replace(b"\r\n", b"\n")
        cut = self.buffer.rfind(b"\n\n")
        if cut < 0:
            return
        complete, self.buffer = self.buffer[:cut + 2], self.buffer[cut + 2:]
        try:
            events = parse_events(complete)
        except ValueError as exc:
            self._error(f"The agent server sent a malformed event ({exc}).", "upstream_malformed")
            return
        for _raw, name, data in events:
            if self.finished:
                return
            first = self.meter.run_id is None
            text = self.meter.observe(name, data)
            if name == "metadata" and first:
                self._chunk({"role": "assistant", "content": ""})
            elif name == "error":
                error = self.meter.error
                self._error(f"The agent failed: {error.get('message') or error.get('error')}", "agent_error")
            elif text:
                self._chunk({"content": text})

    def _end(self) -> None:
        """The run's body ended: the answer is complete (LangGraph sends no end event)."""
        if not self.meter.streamed_text:
            text = self.meter.answer_text()
            if text:
                self._chunk({"content": text})
        self._chunk({}, finish="stop")
        usage = self.usage()
        if usage is not None:
            self._chunk(None, usage=usage)
        self.out.append(b"data: [DONE]\n\n")
        self.finished = True

    def usage(self) -> dict | None:
        """Return the run's usage in OpenAI's shape (None when its models reported none)."""
        reported = self.meter.usage()
        if reported is None:
            return None
        return {"prompt_tokens": reported[0], "completion_tokens": reported[1],
                "total_tokens": reported[0] + reported[1]}


class AgentAnswer:
    """A finished run as a non-streamed OpenAI chat completion."""

    def __init__(self, stream: AgentStream):
        self.status, self.headers = 200, {}
        completion = {"id": f"chatcmpl-{stream.meter.run_id or 'agent'}", "object": "chat.completion",
                      "created": stream.created, "model": stream.model,
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": stream.meter.answer_text()}}]}
        usage = stream.usage()
        if usage is not None:
            completion["usage"] = usage
        self.data = json.dumps(completion).encode()

    def close(self):
        pass

    def release_conn(self):
        pass


class AgentBackend:
    """The chat backend named ``langgraph``: each graph of the server as ``agent:<graph_id>``."""

    kind = NAME

    def __init__(self, client):
        self.name = NAME
        self.client = client

    @property
    def reachable(self):
        return self.client.reachable

    @property
    def last_error(self):
        return self.client.last_error

    def model_ids(self) -> list[str]:
        """Return ``agent:<graph_id>`` for each graph the server runs."""
        return [PREFIX + graph for graph in self.client.graph_ids()]

    def attribute(self, payload: dict, actor, request_id: str, session_id: str | None) -> None:
        payload["user"] = actor.id

    def request_headers(self, request_id: str, actor) -> dict:
        return self.client.headers_for(request_id)

    def send_chat(self, body: bytes, headers: dict, timeout, stream: bool):
        """Run the graph named by the body's model on its messages; returns an OpenAI-shaped
        stream or answer (or the server's own refusal, for chat to report). Raises
        :class:`UpstreamFailure` when the graph fails in a non-streamed call."""
        chat = json.loads(body)
        model = chat["model"]
        run = {"assistant_id": model[len(PREFIX):] if model.startswith(PREFIX) else model,
               "input": {"messages": graph_messages(chat["messages"])},
               "stream_mode": ["messages-tuple", "values"], "on_disconnect": "cancel",
               "on_completion": "delete", "metadata": {OWNER: chat.get("user")}}
        response = self.client.pool.urlopen(
            "POST", self.client.prefix + "/runs/stream", body=json.dumps(run).encode(), headers=headers,
            timeout=timeout, preload_content=False, retries=False, redirect=False, assert_same_host=False)
        if response.status != 200:
            return response
        translated = AgentStream(response, model)
        if stream:
            return translated
        while translated.read1():
            pass
        if translated.failure is not None:
            raise UpstreamFailure(502, translated.failure, "agent_error")
        return AgentAnswer(translated)
