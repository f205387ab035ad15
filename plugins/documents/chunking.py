"""Splitting sections into overlapping chunks that keep their section's page and heading."""
from __future__ import annotations

from dataclasses import dataclass

from .parsing import Section


@dataclass
class Chunk:
    text: str
    index: int
    page: int | None
    heading: str | None


def chunk_sections(sections: list[Section], size: int, overlap: int) -> list[Chunk]:
    """Return chunks of at most ``size`` characters, each overlapping the previous one of its
    section by about ``overlap`` characters, cut at a paragraph, line or word end when one is near."""
    chunks: list[Chunk] = []
    for section in sections:
        text = " ".join(section.text.split(" ")).strip()
        start = 0
        while start < len(text):
            end = min(len(text), start + size)
            if end < len(text):
                end = _good_cut(text, start, end)
            piece = text[start:end].strip()
            if piece:
                chunks.append(Chunk(piece, len(chunks), section.page, section.heading))
            if end >= len(text):
                break
            start = max(start + 1, end - overlap)
    return chunks


def _good_cut(text: str, start: int, end: int) -> int:
    floor = start + (end - start) // 2
    for mark in ("\n\n", "\n", ". ", " "):
        cut = text.rfind(mark, floor, end)
        if cut > floor:
            return cut + len(mark)
    return end
