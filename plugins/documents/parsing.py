"""Turning an uploaded file into text sections that know where they came from (page, heading).

Each format is read by a well-kept library: pypdf (PDF), python-docx (DOCX), python-pptx
(PPTX), BeautifulSoup (HTML) and markdown-it-py (Markdown); plain text is decoded as it is.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

FORMATS = {".pdf": "pdf", ".docx": "docx", ".pptx": "pptx", ".html": "html", ".htm": "html",
           ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text"}


@dataclass
class Section:
    """A run of text and where it is: a page (PDF, a slide for PPTX), the heading above it
    (what a citation names) and the path of headings down to it, outermost first."""

    text: str
    page: int | None = None
    heading: str | None = None
    path: tuple = ()

    @property
    def context(self) -> str | None:
        """Return the heading path as one line (``Guide › Installing › Proxies``), else the heading."""
        return " › ".join(self.path) if len(self.path) > 1 else self.heading


class HeadingTrail:
    """The headings above the text being read: a heading of level ``n`` closes every open
    heading of level ``n`` or deeper (level 0 is the document's own title)."""

    def __init__(self):
        self.open: list[tuple[int, str]] = []

    def enter(self, level: int, text: str) -> None:
        while self.open and self.open[-1][0] >= level:
            self.open.pop()
        self.open.append((level, text))

    def section(self, text: str, page: int | None = None) -> Section:
        """Return a section of ``text`` under the headings open now."""
        path = tuple(heading for _level, heading in self.open)
        return Section(text, page=page, heading=path[-1] if path else None, path=path)


class UnsupportedType(Exception):
    """The file is not one of the formats the portal reads (415)."""


class BadDocument(Exception):
    """The file is of a supported type but cannot be read: corrupt, encrypted, or empty (422)."""


class TooLarge(BadDocument):
    """The file is past one of the caps on what one file may cost (413): its pages, its text."""


@dataclass
class Caps:
    """What one file may cost to read: pages (slides for PPTX) and characters of text."""

    max_pages: int = 2000
    max_text_chars: int = 5_000_000


def format_of(name: str, data: bytes) -> str:
    """Return the format of ``name`` by its extension, checked against its first bytes."""
    dot = name.rfind(".")
    kind = FORMATS.get(name[dot:].lower()) if dot >= 0 else None
    if kind is None:
        raise UnsupportedType(f"{name}: only PDF, DOCX, PPTX, HTML, Markdown and plain text are read")
    if kind == "pdf" and not data.startswith(b"%PDF"):
        raise BadDocument(f"{name}: not a PDF (it does not start with %PDF)")
    if kind in ("docx", "pptx") and not zipfile.is_zipfile(io.BytesIO(data)):
        raise BadDocument(f"{name}: not a {kind.upper()} file (not a zip archive)")
    return kind


def parse(name: str, data: bytes, caps: Caps | None = None) -> list[Section]:
    """Return the text sections of the file ``name`` holding ``data``, within ``caps``.

    Raises :class:`UnsupportedType`, :class:`BadDocument` or :class:`TooLarge` (naming the file).
    Run it in the job worker's parsing child (``sandbox``), which bounds its time and memory.
    """
    kind, caps = format_of(name, data), caps or Caps()
    try:
        sections, chars = [], 0
        for section in _PARSERS[kind](data):  # a generator (PDF, PPTX) stops at the first page past the cap
            if section.page is not None and section.page > caps.max_pages:
                raise TooLarge(f"has more than {caps.max_pages} pages (documents.max_pages)")
            chars += len(section.text)
            if chars > caps.max_text_chars:
                raise TooLarge(f"holds more than {caps.max_text_chars} characters of text (documents.max_text_chars)")
            sections.append(section)
    except TooLarge as exc:
        raise TooLarge(f"{name}: {exc}") from None
    except BadDocument as exc:
        raise BadDocument(f"{name}: {exc}") from None
    except Exception as exc:  # each library fails in its own way on a broken file
        raise BadDocument(f"{name}: cannot be read as {kind} ({type(exc).__name__}: {exc})") from exc
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise BadDocument(f"{name}: has no text")
    return sections


def open_pdf(data: bytes):
    """Return a pypdf reader of ``data``, decrypted when its password is empty; raises
    :class:`BadDocument` when it is encrypted."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            if not reader.decrypt(""):
                raise BadDocument("is encrypted")
        except BadDocument:
            raise
        except Exception as exc:
            raise BadDocument(f"is encrypted ({exc})") from exc
    return reader


def _pdf(data: bytes):
    reader = open_pdf(data)
    outline, trail = _pdf_outline(reader), HeadingTrail()
    seen = set()
    for number, page in enumerate(reader.pages, 1):
        ref = page.indirect_reference
        key = (ref.idnum, ref.generation) if ref is not None else None
        if key is not None and key in seen:  # a page tree that names one page again and again
            raise BadDocument(f"its page tree names page object {ref.idnum} more than once")
        seen.add(key)
        while outline and outline[0][0] <= number:  # the outline's entries up to this page
            _page, depth, title = outline.pop(0)
            trail.enter(depth, title)
        yield trail.section(page.extract_text() or "", page=number)


_MAX_OUTLINE_ENTRIES, _MAX_OUTLINE_DEPTH = 5000, 16


def _pdf_outline(reader) -> list[tuple[int, int, str]]:
    """Return the PDF's outline (bookmarks) as ``(page number, depth, title)`` in page order,
    at most 5,000 entries 16 deep; [] when it has none or it cannot be read."""
    entries: list[tuple[int, int, str]] = []

    def walk(items, depth):
        for item in items:
            if len(entries) >= _MAX_OUTLINE_ENTRIES or depth > _MAX_OUTLINE_DEPTH:
                return
            if isinstance(item, list):  # the children of the entry before it
                walk(item, depth + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # an entry pointing nowhere readable names no page
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            if title and page is not None and page >= 0:
                entries.append((page + 1, depth, title))

    try:
        walk(reader.outline, 1)
    except Exception:  # a broken outline is no reason to refuse the text
        return []
    return sorted(entries, key=lambda entry: entry[0])  # stable: an outline's order within a page holds


def _docx(data: bytes) -> list[Section]:
    import docx

    document = docx.Document(io.BytesIO(data))
    sections, trail, lines = [], HeadingTrail(), []
    for paragraph in document.paragraphs:
        level = _docx_heading_level((paragraph.style.name or "") if paragraph.style is not None else "")
        if level is not None and paragraph.text.strip():
            if lines:
                sections.append(trail.section("\n".join(lines)))
            trail.enter(level, paragraph.text.strip())
            lines = []
        elif paragraph.text.strip():
            lines.append(paragraph.text)
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text for cell in row.cells))
    if lines:
        sections.append(trail.section("\n".join(lines)))
    return sections


def _docx_heading_level(style: str) -> int | None:
    """Return the outline level of a paragraph style (``Title`` 0, ``Heading 2`` 2), or None."""
    if style == "Title":
        return 0
    if style.startswith("Heading"):
        digits = style[len("Heading"):].strip()
        return int(digits) if digits.isdigit() else 1
    return None


def _pptx(data: bytes):
    from pptx import Presentation

    for number, slide in enumerate(Presentation(io.BytesIO(data)).slides, 1):
        title = slide.shapes.title.text if slide.shapes.title is not None else None
        texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame and shape.text_frame.text]
        yield Section("\n".join(texts), page=number, heading=title, path=(title,) if title else ())


_HTML_HEADINGS = ("h1", "h2", "h3", "h4")
_HTML_BLOCKS = frozenset(_HTML_HEADINGS + ("p", "li", "pre", "dt", "dd", "td", "th"))


def _html(data: bytes) -> list[Section]:
    """Each heading starts a section; each block (paragraph, item, cell, pre) is a line of it.
    Text is given to its nearest block, so tag soup reads as a browser shows it: a heading after
    an unclosed ``<p>`` still starts its own section (the parser nests it inside the ``<p>``)."""
    from bs4 import BeautifulSoup, Comment, NavigableString

    soup = BeautifulSoup(data, "html.parser")
    for hidden in soup(["script", "style", "noscript", "template"]):
        hidden.decompose()
    root = soup.body or soup
    sections, lines, trail = [], [], HeadingTrail()
    if soup.title and soup.title.string and soup.title.string.strip():
        trail.enter(0, soup.title.string.strip())
    block, words = None, []

    def end_block():
        nonlocal lines
        text = " ".join(words)
        words.clear()
        if not text:
            return
        if block.name in _HTML_HEADINGS:
            if lines:
                sections.append(trail.section("\n".join(lines)))
            trail.enter(int(block.name[1]), text.rstrip("¶").strip())
            lines = []
        else:
            lines.append(text)

    for node in root.descendants:
        if not isinstance(node, NavigableString) or isinstance(node, Comment):
            continue
        owner = next((parent for parent in node.parents if parent.name in _HTML_BLOCKS), None)
        if owner is None:
            continue  # text outside any block (navigation, bare divs) is left out
        if owner is not block:
            if block is not None:
                end_block()
            block = owner
        word = node.strip()
        if word:
            words.append(word)
    if block is not None:
        end_block()
    if lines:
        sections.append(trail.section("\n".join(lines)))
    return sections


def _markdown(data: bytes) -> list[Section]:
    from markdown_it import MarkdownIt

    text = _decode(data)
    tokens = MarkdownIt("commonmark").parse(text)
    source_lines = text.splitlines()
    sections, trail, start = [], HeadingTrail(), 0
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.map:
            body = "\n".join(source_lines[start:token.map[0]])
            if body.strip():
                sections.append(trail.section(body))
            trail.enter(int(token.tag[1:]), tokens[index + 1].content.strip())
            start = token.map[1]
    body = "\n".join(source_lines[start:])
    if body.strip():
        sections.append(trail.section(body))
    return sections


def _text(data: bytes) -> list[Section]:
    return [Section(_decode(data))]


def looks_binary(data: bytes) -> bool:
    """Return True when ``data`` has a NUL in its first 4 KB: not text."""
    return b"\x00" in data[:4096]


def _decode(data: bytes) -> str:
    if looks_binary(data):
        raise BadDocument("is binary, not text")
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


_PARSERS = {"pdf": _pdf, "docx": _docx, "pptx": _pptx, "html": _html, "markdown": _markdown, "text": _text}
