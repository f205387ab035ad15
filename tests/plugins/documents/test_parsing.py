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
