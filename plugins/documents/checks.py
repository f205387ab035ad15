"""The checks an upload passes before it is stored and queued: cheap ones, bounded by the file's
size, never its content's whims (nothing is extracted here; parsing is the job's). A file that
fails one refuses the whole upload."""
from __future__ import annotations

import io
import re
import zipfile

from .parsing import BadDocument, Caps, TooLarge, format_of, looks_binary, open_pdf

_SLIDE = re.compile(r"^ppt/slides/slide[0-9]+\.xml$")
_MAIN_PART = {"docx": "word/document.xml", "pptx": "ppt/presentation.xml"}


def check_file(name: str, data: bytes, caps: Caps, max_inflated_bytes: int) -> int | None:
    """Return the file's page count where its format says it cheaply (PDF, PPTX), else None.

    Raises ``UnsupportedType`` (415), :class:`BadDocument` (422: not what its name says,
    truncated, encrypted, not a document) or :class:`TooLarge` (413: pages, or a zip that
    inflates past ``max_inflated_bytes``), each naming the file.
    """
    kind = format_of(name, data)
    try:
        if kind == "pdf":
            return _pdf_pages(data, caps)
        if kind in ("docx", "pptx"):
            return _zip_parts(kind, data, caps, max_inflated_bytes)
        if not data.strip():
            raise BadDocument("has no text")
        if kind != "html" and looks_binary(data):
            raise BadDocument("is binary, not text")
    except TooLarge as exc:
        raise TooLarge(f"{name}: {exc}") from None
    except BadDocument as exc:
        raise BadDocument(f"{name}: {exc}") from None
    return None


def _pdf_pages(data: bytes, caps: Caps) -> int:
    if b"%%EOF" not in data[-2048:]:
        raise BadDocument("is truncated (no %%EOF at its end)")
    try:
        reader = open_pdf(data)
        count = int(reader.trailer["/Root"]["/Pages"]["/Count"])  # what the file says; the job counts again
    except BadDocument:
        raise
    except Exception as exc:
        raise BadDocument(f"cannot be read as pdf ({type(exc).__name__}: {exc})") from None
    if count > caps.max_pages:
        raise TooLarge(f"has {count} pages, more than {caps.max_pages} (documents.max_pages)")
    if count < 1:
        raise BadDocument("has no pages")
    return count


def _zip_parts(kind: str, data: bytes, caps: Caps, max_inflated_bytes: int) -> int | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise BadDocument(f"not a {kind.upper()} file ({exc})") from None
    names = {entry.filename for entry in entries}
    if _MAIN_PART[kind] not in names:
        raise BadDocument(f"not a {kind.upper()} file (it has no {_MAIN_PART[kind]})")
    inflated = sum(entry.file_size for entry in entries)
    if inflated > max_inflated_bytes:
        raise TooLarge(f"inflates to {inflated} bytes, more than {max_inflated_bytes} "
                       "(documents.max_inflated_bytes)")
    if kind == "pptx":
        slides = sum(1 for n in names if _SLIDE.match(n))
        if slides > caps.max_pages:
            raise TooLarge(f"has {slides} slides, more than {caps.max_pages} (documents.max_pages)")
        return slides
    return None
