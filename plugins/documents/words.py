"""A chunk's words as a sparse vector, for stores whose full-text half is a sparse vector search
with the collection's IDF applied by the store (Qdrant's ``Modifier.IDF``): each word's id a
stable hash, its weight BM25's saturated term frequency, normalised by the chunk's length."""
from __future__ import annotations

import re
import zlib
from collections import Counter

K1, B = 1.2, 0.75  # BM25's usual constants
AVERAGE_WORDS = 180  # a 1,200-character chunk; the length normalisation's reference
WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in into is it its of on or that the their this to was were will "
    "with".split())


def words(text: str) -> list[str]:
    """Return ``text``'s words: lower case, letters and digits (json.dumps() is json, dumps), stop words out."""
    return [w for w in WORD.findall(text.lower()) if w not in STOP_WORDS]


def term_id(word: str) -> int:
    """Return the word's id: CRC-32, the same in every process (Python's hash() is salted)."""
    return zlib.crc32(word.encode())


def document_terms(text: str) -> tuple[list[int], list[float]]:
    """Return a chunk's (ids, weights): BM25's term-frequency part for each distinct word."""
    counts = Counter(words(text))
    length = sum(counts.values()) or 1
    norm = K1 * (1 - B + B * length / AVERAGE_WORDS)
    terms = {}
    for word, tf in counts.items():  # two words may share an id: their weights add
        terms[term_id(word)] = terms.get(term_id(word), 0.0) + tf * (K1 + 1) / (tf + norm)
    return list(terms), list(terms.values())


def query_terms(text: str) -> tuple[list[int], list[float]]:
    """Return a question's (ids, weights): each distinct word once, weight 1 (the store adds IDF)."""
    ids = sorted({term_id(word) for word in words(text)})
    return ids, [1.0] * len(ids)
