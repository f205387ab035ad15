"""Collections as models: ``docs:<collection>`` on ``/v1/chat/completions`` answers as
``/documents/ask`` does, in OpenAI's format, with the sources appended."""
from __future__ import annotations

import json
from types import SimpleNamespace

from agent_portal import Actor, PortalError
from agent_portal.adapter import OpenAIAnswer, ProtocolBackend
from agent_portal.upstream import UpstreamFailure

from .answers import CitingStream, answer_target, citations, grounded_messages, search_collections
from .settings import NAME, state_of

PREFIX = "docs:"



class DocsBackend(ProtocolBackend):
    """The chat backend named ``documents``: each readable collection as ``docs:<name>``,
    answered as ``/documents/ask`` answers, in OpenAI's format."""

    def __init__(self, portal):
        super().__init__(NAME, SimpleNamespace(reachable=True, last_error=None))  # nothing remote to reach
        self.portal = portal

    def model_ids(self) -> list[str]:
        return sorted({PREFIX + c["name"] for c in state_of(self.portal).catalog.readable(
            Actor(id="", role="admin", via="documents"))})

    def attribute(self, payload: dict, actor, request_id: str, session_id: str | None) -> None:
        # stays in the portal: send_chat reads who is asking, then builds the answer model's own body
        payload["user"], payload["portal_role"], payload["portal_request_id"] = actor.id, actor.role, request_id

    def collection_for(self, actor, model: str) -> dict | None:
        """Return the collection ``docs:<name>`` means for ``actor``: their own of that name,
        else the oldest one shared with them."""
        name = model[len(PREFIX):]
        return next((c for c in state_of(self.portal).catalog.readable(actor) if c["name"] == name), None)

    def send_chat(self, body: bytes, headers: dict, timeout, stream: bool):
        """Answer the last user message from the collection, with citations."""
        portal, chat = self.portal, json.loads(body)
        request_id = chat.get("portal_request_id") or "docs"
        actor = Actor(id=chat["user"], role=chat["portal_role"], via="documents")
        collection = self.collection_for(actor, chat["model"])
        if collection is None:
            raise UpstreamFailure(404, f"No collection {chat['model'][len(PREFIX):]!r} you may read.", "model_not_found")
        question = next((m.get("content") for m in reversed(chat["messages"]) if m.get("role") == "user"), None)
        if not isinstance(question, str) or not question.strip():
            raise UpstreamFailure(400, "A question needs a last user message with text.", "invalid_request")
        query = question[:state_of(portal).settings.max_query_chars]
        try:
            target = answer_target(portal, actor, None)
            # the chat call's admission covers the query's embedding: it is billed in the answer's prompt
            hits = search_collections(portal, query, [collection["id"]], state_of(portal).settings.top_k)
        except PortalError as failure:
            raise UpstreamFailure(failure.status, failure.message, failure.code or "upstream_error") from None
        query_tokens = portal.token_counter.count_text(chat["model"], query) + 3
        history = [m for m in chat["messages"] if m.get("role") in ("user", "assistant")]
        answer = {k: v for k, v in chat.items() if k not in ("portal_role", "portal_request_id", "messages", "model")}
        answer.update(model=target.upstream_model, messages=grounded_messages(hits, history))
        target.backend.attribute(answer, actor, request_id, None)
        response = target.backend.send_chat(json.dumps(answer).encode(),
                                            target.backend.request_headers(request_id, actor), timeout, stream)
        if response.status != 200:
            return response
        if stream:
            return CitingStream(response, chat["model"], hits, query_tokens)
        data = json.loads(response.data)
        text = (data["choices"][0]["message"]["content"] or "") + citations(hits)
        usage = data.get("usage")
        return OpenAIAnswer(chat["model"], text, "docs",
                            (usage["prompt_tokens"] + query_tokens, usage["completion_tokens"]) if usage else None)
