"""Splitting sections into overlapping chunks that keep their section's page and heading, each
small enough for the embedder to read whole, and the text each chunk is embedded as."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from .parsing import Section


@dataclass
class Chunk:
    text: str
    index: int
    page: int | None
    heading: str | None  # the nearest heading: what a citation names
    context: str | None = None  # the heading path it is embedded with (Section.context)


def embedding_text(file_name: str, context: str | None, text: str) -> str:
    """Return what a chunk is embedded as: its document's title and its heading path before its
    text, so a chunk deep in a section still carries what it is about (the stored text stays the
    chunk)."""
    title = PurePath(file_name).stem.replace("_", " ").replace("-", " ")
    return f"{title} — {context}\n{text}" if context and context != title else f"{title}\n{text}"


def chunk_sections(sections: list[Section], size: int, overlap: int, fits=None) -> list[Chunk]:
    """Return chunks of at most ``size`` characters, each overlapping the previous one of its
    section by about ``overlap`` characters, cut at a paragraph, line or word end when one is near.

    ``fits(context, text)``, when given, says whether the embedder reads a chunk whole (its
    tokens within the model's length, context included); a chunk that does not fit is cut
    shorter until it does, so no chunk's tail goes unembedded.
    """
    chunks: list[Chunk] = []
    for section in sections:
        text = " ".join(section.text.split(" ")).strip()
        start = 0
        while start < len(text):
            end = min(len(text), start + size)
            if end < len(text):
                end = _good_cut(text, start, end)
            while fits is not None and end - start > 40 and not fits(section.context, text[start:end]):
                end = _good_cut(text, start, start + (end - start) * 4 // 5)
            piece = text[start:end].strip()
            if piece:
                chunks.append(Chunk(piece, len(chunks), section.page, section.heading, section.context))
            if end >= len(text):
                break
            start = max(start + 1, end - min(overlap, (end - start) // 2))
    return chunks


def _good_cut(text: str, start: int, end: int) -> int:
    floor = start + (end - start) // 2
    for mark in ("\n\n", "\n", ". ", " "):
        cut = text.rfind(mark, floor, end)
        if cut > floor:
            return cut + len(mark)
    return end
