"""Reading documents into sections: the text of each and the heading above it."""
from __future__ import annotations

from agent_portal.plugins.documents.parsing import parse


def test_html_headings_are_found_after_an_unclosed_paragraph():
    # tag soup as manuals are written: no </p> anywhere, so a plain parser nests every heading
    # that follows inside the first paragraph
    page = (b"<html><head><title>The manual</title></head><body>"
            b"<p>Read this first.<h2>Installing</h2><p>Run the installer.<p>Then reboot."
            b"<h2>Configuring \xc2\xb6</h2><p>Edit <code>portal.yaml</code>.<ul><li>one setting<li>another</ul>"
            b"<h3>Logging</h3><pre>log_level: INFO\n</pre></body></html>")
    sections = [(s.heading, s.text) for s in parse("manual.html", page)]
    assert sections == [
        ("The manual", "Read this first."),
        ("Installing", "Run the installer.\nThen reboot."),
        ("Configuring", "Edit portal.yaml .\none setting\nanother"),
        ("Logging", "log_level: INFO"),
    ]


def test_html_keeps_text_of_well_formed_pages_and_skips_scripts():
    page = (b"<html><body><h1>Title</h1><script>var x = 1;</script><p>First <b>bold</b> words.</p>"
            b"<table><tr><th>key</th><td>value</td></tr></table></body></html>")
    assert [(s.heading, s.text) for s in parse("page.html", page)] == [("Title", "First bold words.\nkey\nvalue")]


def test_html_sections_know_the_path_of_headings_above_them():
    page = (b"<html><head><title>Guide</title></head><body><h1>Networking</h1><p>Intro."
            b"<h2>Proxies</h2><p>Set HTTPS_PROXY.<h3>No proxy</h3><p>List hosts.<h2>DNS</h2><p>Use resolv.conf."
            b"</body></html>")
    assert [(s.heading, s.path) for s in parse("guide.html", page)] == [
        ("Networking", ("Guide", "Networking")),
        ("Proxies", ("Guide", "Networking", "Proxies")),
        ("No proxy", ("Guide", "Networking", "Proxies", "No proxy")),
        ("DNS", ("Guide", "Networking", "DNS"))]
    assert parse("guide.html", page)[2].context == "Guide › Networking › Proxies › No proxy"


def test_markdown_sections_know_the_path_of_headings_above_them():
    text = b"# Setup\n\nInstall.\n\n## Backups\n\nNightly.\n\n### Restore\n\nFrom the last.\n\n# Usage\n\nRun it.\n"
    assert [s.path for s in parse("guide.md", text)] == [
        ("Setup",), ("Setup", "Backups"), ("Setup", "Backups", "Restore"), ("Usage",)]


def test_docx_heading_styles_make_the_path():
    import io

    import docx as python_docx

    document = python_docx.Document()
    document.add_heading("Handbook", level=0)  # the Title style
    document.add_heading("Travel", level=1)
    document.add_paragraph("Book through the portal.")
    document.add_heading("Refunds", level=2)
    document.add_paragraph("Within thirty days.")
    document.add_heading("Remote work", level=1)
    document.add_paragraph("Fridays.")
    out = io.BytesIO()
    document.save(out)
    assert [(s.heading, s.path, s.text) for s in parse("handbook.docx", out.getvalue())] == [
        ("Travel", ("Handbook", "Travel"), "Book through the portal."),
        ("Refunds", ("Handbook", "Travel", "Refunds"), "Within thirty days."),
        ("Remote work", ("Handbook", "Remote work"), "Fridays.")]


def test_pdf_pages_take_their_heading_path_from_the_outline():
    import io

    from pypdf import PdfReader, PdfWriter

    from documents_files import pdf

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf(["Cover.", "Install it.", "Proxies here.", "Use DNS."]))))
    setup = writer.add_outline_item(title="Setup", page_number=1)  # 0-based: the second page
    writer.add_outline_item(title="Proxies", page_number=2, parent=setup)
    writer.add_outline_item(title="Names", page_number=3)
    out = io.BytesIO()
    writer.write(out)
    sections = parse("manual.pdf", out.getvalue())
    assert [(s.page, s.heading, s.path) for s in sections] == [
        (1, None, ()), (2, "Setup", ("Setup",)), (3, "Proxies", ("Setup", "Proxies")), (4, "Names", ("Names",))]


def test_a_pdf_whose_outline_points_nowhere_is_read_without_headings():
    import io

    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject, NumberObject

    from documents_files import pdf

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf(["One.", "Two."]))))
    item = writer.add_outline_item(title="Lost", page_number=1)
    item.get_object()[NameObject("/A")][NameObject("/D")][0] = NumberObject(99)  # a page that is not there
    out = io.BytesIO()
    writer.write(out)
    assert [(s.page, s.heading) for s in parse("odd.pdf", out.getvalue())] == [(1, None), (2, None)]
