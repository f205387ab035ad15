"""Chunks the embedder reads whole: cut shorter until their tokens fit the model's length, and
embedded with their document's title and heading."""
from __future__ import annotations

from agent_portal.plugins.documents.chunking import chunk_sections, embedding_text
from agent_portal.plugins.documents.parsing import Section

PROSE = " ".join(f"word{i} of a long section about retries and back-off." for i in range(400))


def test_a_chunk_the_embedder_cannot_read_whole_is_cut_until_it_fits():
    fits = lambda heading, text: len(text.split()) <= 60  # noqa: E731 - a model that reads 60 words
    chunks = chunk_sections([Section(PROSE, 1, "Retries")], 1200, 200, fits=fits)
    assert chunks and all(len(c.text.split()) <= 60 for c in chunks)
    assert {f"word{i}" for i in range(400)} <= {w for c in chunks for w in c.text.split()}  # nothing lost
    assert all((c.page, c.heading) == (1, "Retries") for c in chunks)
    wide = chunk_sections([Section(PROSE, 1, "Retries")], 1200, 200)
    assert max(len(c.text.split()) for c in wide) > 60  # by characters alone they were longer


def test_a_chunk_is_embedded_with_its_title_and_heading():
    assert embedding_text("json.html", "Basic Usage", "dumps(obj)") == "json — Basic Usage\ndumps(obj)"
    assert embedding_text("release-notes.pdf", None, "text") == "release notes\ntext"
    assert embedding_text("guide.md", "guide", "text") == "guide\ntext"


def test_with_the_real_tokenizer_no_chunk_passes_the_models_256_tokens():
    from agent_portal.plugins.documents.embedders import OnnxEmbedder

    embedder = OnnxEmbedder("all-MiniLM-L6-v2", 16)
    code = "\n".join(f"os.path.join(a{i}, b{i}) -> str  # {i:04x}" for i in range(200))  # many tokens a character
    assert not embedder.reads_whole(code) and embedder.reads_whole("a short line")
    chunks = chunk_sections([Section(code, None, "os.path")], 1200, 200,
                            fits=lambda heading, text: embedder.reads_whole(embedding_text("os.html", heading, text)))
    assert len(chunks) > 1 and all(embedder.reads_whole(embedding_text("os.html", c.heading, c.text)) for c in chunks)


def test_a_chunk_carries_its_heading_for_citations_and_its_path_for_the_embedder():
    section = Section("Set HTTPS_PROXY for the portal's outbound calls.", 3, "Proxies", ("Guide", "Networking", "Proxies"))
    [chunk] = chunk_sections([section], 1200, 200, fits=lambda context, text: context == "Guide › Networking › Proxies")
    assert (chunk.page, chunk.heading, chunk.context) == (3, "Proxies", "Guide › Networking › Proxies")
    assert embedding_text("install.html", chunk.context, chunk.text).startswith("install — Guide › Networking › Proxies\n")
