"""Real documents of every supported type, made in memory for the documents tests."""
from __future__ import annotations

import io


def pdf(pages: list[str], password: str | None = None) -> bytes:
    from fpdf import FPDF

    document = FPDF()
    document.set_font("helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 8, text)
    if password:
        document.set_encryption(owner_password=password + "-owner", user_password=password)
    return bytes(document.output())


def docx(heading: str, paragraphs: list[str]) -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx(slides: list[tuple[str, str]]) -> bytes:
    from pptx import Presentation

    deck = Presentation()
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def raw_pdf(objects: list[bytes]) -> bytes:
    """Return a PDF of ``objects`` (object 1 is the catalog) with a correct cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def page_bomb_pdf(times: int = 1000, count: int | None = None) -> bytes:
    """A PDF of under a kilobyte whose page tree names its one page ``times`` times (and says it
    has ``count`` pages: by default 1, so a page count read from the file passes)."""
    kids = b" ".join([b"3 0 R"] * times)
    stream = b"BT /F1 12 Tf 72 720 Td (" + b"bomb " * 200 + b") Tj ET"
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, 1 if count is None else count),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"])
