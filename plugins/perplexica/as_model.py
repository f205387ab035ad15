"""Search as a model: ``search:<source>`` on ``/v1/chat/completions`` runs a Perplexica search on
the last user message (the earlier turns as its history) and answers as OpenAI chunks, the
sources as numbered citations, so Open WebUI users can pick it from the model list."""
from __future__ import annotations

import json

from agent_portal.adapter import OpenAIAnswer, ProtocolBackend
from agent_portal.upstream import UpstreamFailure

from .client import normalize_sources
from .search import read_history
from .settings import NAME
from .stream import SearchAsChat, citations

PREFIX = "search:"


def _text(content) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


class SearchBackend(ProtocolBackend):
    """The chat backend named ``perplexica``: each allowed source as ``search:<source>``."""

    def __init__(self, client, settings):
        super().__init__(NAME, client)
        self.settings = settings

    def model_ids(self) -> list[str]:
        return [PREFIX + source for source in sorted(set(self.settings.sources["user"])
                                                     | set(self.settings.sources["admin"]))]

    def send_chat(self, body: bytes, headers: dict, timeout, stream: bool):
        """Search Perplexica for the last user message; returns an OpenAI-shaped stream or
        answer. Raises :class:`UpstreamFailure` for a question it cannot search."""
        chat = json.loads(body)
        turns = [m for m in chat["messages"] if m.get("role") in ("user", "assistant")]
        if not turns or turns[-1].get("role") != "user" or not _text(turns[-1].get("content")).strip():
            raise UpstreamFailure(400, "A search needs a last message from the user.", "invalid_search")
        history = read_history([{"role": m["role"], "content": _text(m.get("content"))} for m in turns[:-1]],
                               self.settings.max_history_turns)
        search = self.client.search_body(_text(turns[-1]["content"]), [chat["model"][len(PREFIX):]],
                                         self.settings.mode, history, stream)
        response = self.client.pool.urlopen("POST", self.client.prefix + "/api/search",
                                            body=json.dumps(search).encode(), headers=headers, timeout=timeout,
                                            preload_content=not stream, retries=False, redirect=False,
                                            assert_same_host=False)
        if response.status != 200:
            return response
        if stream:
            return SearchAsChat(response, chat["model"])
        try:
            data = json.loads(response.data)
            answer = data["message"] + citations(normalize_sources(data.get("sources")))
        except (ValueError, KeyError, TypeError):
            raise UpstreamFailure(502, "Perplexica answered with something other than {message, sources}.",
                                  "upstream_malformed") from None
        return OpenAIAnswer(chat["model"], answer, "search")
