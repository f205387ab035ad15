"""Agents as models: ``agent:<graph_id>`` on ``/v1/chat/completions`` runs the graph.

The chat plugin calls a backend's ``send_chat`` with an OpenAI chat body; this backend turns it
into a stateless run (``stream_mode`` ``messages-tuple`` and ``values``, the OpenAI messages as
the graph's ``messages`` input) and turns the run's events back into OpenAI chunks as they come,
so chat's admission, relay, counting and record apply to agents unchanged.
"""
from __future__ import annotations

import json

from agent_portal.adapter import OpenAIAnswer, OpenAIStreamAdapter, ProtocolBackend
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


class AgentStream(OpenAIStreamAdapter):
    """A LangGraph run stream read as an OpenAI chat stream: a role chunk at the run's start,
    a content chunk per token the graph's models stream, the final chunk, the usage and
    ``[DONE]`` when the body ends; an error object when the graph raised."""

    def __init__(self, response, model: str):
        super().__init__(response, model, call_id="agent")
        self.meter = RunMeter()

    def take(self, events: bytes) -> None:
        try:
            parsed = parse_events(events)
        except ValueError as exc:
            self.fail(f"The agent server sent a malformed event ({exc}).", "upstream_malformed")
            return
        for _raw, name, data in parsed:
            if self.finished:
                return
            first = self.meter.run_id is None
            text = self.meter.observe(name, data)
            if name == "metadata" and first:
                self.call_id = self.meter.run_id or self.call_id
                self.chunk({"role": "assistant", "content": ""})
            elif name == "error":
                error = self.meter.error
                self.fail(f"The agent failed: {error.get('message') or error.get('error')}", "agent_error")
            else:
                self.content(text)

    def finish(self) -> None:
        """The run's body ended: the answer is complete (LangGraph sends no end event)."""
        if not self.text:
            self.content(self.meter.answer_text())
        self.complete(self.meter.usage())


class AgentBackend(ProtocolBackend):
    """The chat backend named ``langgraph``: each graph of the server as ``agent:<graph_id>``."""

    def __init__(self, client):
        super().__init__(NAME, client)

    def model_ids(self) -> list[str]:
        """Return ``agent:<graph_id>`` for each graph the server runs."""
        return [PREFIX + graph for graph in self.client.graph_ids()]

    def request_headers(self, request_id: str, actor, session_id: str | None = None) -> dict:
        return self.client.headers_for(request_id)

    def send_chat(self, body: bytes, headers: dict, timeout, stream: bool):
        """Run the graph named by the body's model on its messages; returns an OpenAI-shaped
        stream or answer (or the server's own refusal, for chat to report). Raises
        :class:`UpstreamFailure` when the graph fails in a call that is not streamed."""
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
        text = translated.read_all()
        if translated.failure is not None:
            raise UpstreamFailure(502, translated.failure, "agent_error")
        return OpenAIAnswer(model, text, translated.call_id, translated.meter.usage())
