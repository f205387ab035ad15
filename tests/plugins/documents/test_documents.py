"""Documents through the portal with the real local embedder (all-MiniLM-L6-v2 on the CPU) and
the embedded store; answers come from the fake OpenAI-compatible upstream."""
from __future__ import annotations

import json
import re
import time

import openai
import pytest


from conftest import bearer, settled_rows
from documents_files import docx, pdf, pptx
from documents_worker import POLICY, REPORT_PAGES, document_sections, make_collection, stored_chunks, upload

pytestmark = pytest.mark.integration

@pytest.fixture
def app(make_app, tmp_path, fake_upstream, with_worker):
    return with_worker(make_app(**document_sections(tmp_path, fake_upstream)))


def test_a_user_uploads_a_pdf_and_a_docx_and_gets_a_streamed_answer_citing_the_page(app, fake_upstream):
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice)
    uploaded = upload(client, alice, collection, ("report.pdf", pdf(REPORT_PAGES)), ("policy.docx", docx("Policy", POLICY)))
    assert uploaded.status_code == 202, uploaded.data
    files = uploaded.json["files"]
    assert [(f["name"], f["status"]) for f in files] == [("report.pdf", "ready"), ("policy.docx", "ready")]
    assert files[0]["pages"] == 3 and all(f["chunks"] >= 1 for f in files)
    answer = client.post("/documents/ask", headers=alice, json={
        "question": "How much is the maintenance budget for the cooling towers?", "stream": True, "k": 2})
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    blocks = [b for b in answer.data.split(b"\n\n") if b and not b.startswith(b":")]
    sources = json.loads(blocks[0].split(b"data: ", 1)[1])
    assert (sources[0]["number"], sources[0]["file_name"], sources[0]["page"]) == (1, "report.pdf", 2)
    text = "".join(json.loads(b[6:])["choices"][0]["delta"].get("content") or ""
                   for b in blocks[1:] if b.startswith(b"data: {") and json.loads(b[6:])["choices"])
    assert "Sources:\n[1] report.pdf, page 2" in text
    assert blocks[-1] == b"data: [DONE]"
    grounded = fake_upstream.requests[-1]["messages"][0]["content"]
    assert "[1] (report.pdf, page 2)" in grounded and "48,000 euros" in grounded
    rows = settled_rows(app, 1)  # the ask (its question's embedding in it); the worker wrote the uploads'
    deadline = time.monotonic() + 5
    while sum(r["model"] == "all-MiniLM-L6-v2" for r in rows) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = settled_rows(app, 1)
    embedded = [r for r in rows if r["model"] == "all-MiniLM-L6-v2"]
    assert len(embedded) == 2 and all(r["outcome"] == "ok" and r["prompt_tokens"] > 10 for r in embedded)
    ask = next(r for r in rows if r["model"] == "documents:ask")
    assert (ask["actor_id"], ask["backend"], ask["outcome"], ask["usage_source"]) == ("alice", "documents", "ok", "upstream")
    usage = client.get("/observability/usage?group_by=model", headers=alice).json
    assert "documents:ask" in json.dumps(usage)


def test_another_user_searching_the_same_words_gets_nothing_from_that_collection(app):
    client, alice, bob = app.test_client(), bearer(app, "alice"), bearer(app, "bob")
    collection = make_collection(client, alice)
    upload(client, alice, collection, ("report.pdf", pdf(REPORT_PAGES)))
    bobs = make_collection(client, bob, "bobs")
    upload(client, bob, bobs, ("notes.txt", b"Bob's notes about lunch menus and parking."))
    query = {"query": "maintenance budget for the cooling towers", "k": 10}
    assert client.post("/documents/search", headers=alice, json=query).json["hits"][0]["file_name"] == "report.pdf"
    hits = client.post("/documents/search", headers=bob, json=query).json["hits"]
    assert hits and all(h["collection_id"] == bobs for h in hits)
    assert client.post("/documents/search", headers=bob, json={**query, "collections": [collection]}).status_code == 404
    assert client.post("/documents/ask", headers=bob, json={"question": "budget?", "collections": [collection]}).status_code == 404
    for method, path in (("GET", f"/documents/collections/{collection}"), ("DELETE", f"/documents/collections/{collection}")):
        assert client.open(path, method=method, headers=bob).status_code == 404
    assert [c["id"] for c in client.get("/documents/collections", headers=bob).json["collections"]] == [bobs]
    # shared with bob by name: now he reads it, and still may not change it
    assert client.put(f"/documents/collections/{collection}/sharing", headers=bob, json={"users": ["bob"]}).status_code == 404
    assert client.put(f"/documents/collections/{collection}/sharing", headers=alice, json={"users": ["bob"]}).status_code == 200
    assert any(h["collection_id"] == collection for h in client.post("/documents/search", headers=bob, json=query).json["hits"])
    assert upload(client, bob, collection, ("x.txt", b"intruder")).status_code == 403


def test_the_store_filters_inside_its_query_not_after_its_top_k(app):
    client, alice, bob = app.test_client(), bearer(app, "alice"), bearer(app, "bob")
    crowd = make_collection(client, alice, "crowd")
    upload(client, alice, crowd, *[(f"budget-{i}.txt", f"The cooling tower budget, note {i}.".encode()) for i in range(12)])
    mine = make_collection(client, bob, "mine")
    upload(client, bob, mine, ("far.txt", b"Recipes for apple pie."))
    hits = client.post("/documents/search", headers=bob, json={"query": "cooling tower budget", "k": 3}).json["hits"]
    assert [h["file_name"] for h in hits] == ["far.txt"]  # a post-filter on the top 3 would have found nothing


def test_every_supported_type_is_read_with_its_location(app):
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice)
    files = [("deck.pptx", pptx([("Intro", "Welcome"), ("Results", "Revenue grew by nine percent")])),
             ("page.html", b"<html><head><title>T</title><script>var x=1</script></head><body>"
                           b"<h2>Security</h2><p>Rotate the keys every ninety days.</p></body></html>"),
             ("guide.md", b"# Setup\n\nInstall it.\n\n## Backups\n\nBackups run nightly at two.\n"),
             ("plain.txt", "Plain text with accents: café.".encode())]
    assert upload(client, alice, collection, *files).status_code == 202
    def top(query):
        return client.post("/documents/search", headers=alice, json={"query": query, "k": 1}).json["hits"][0]
    assert (top("How much did revenue grow?")["file_name"], top("How much did revenue grow?")["page"]) == ("deck.pptx", 2)
    assert top("How often are keys rotated?")["heading"] == "Security"
    assert top("When do backups run?")["heading"] == "Backups"
    assert "var x" not in json.dumps(client.post("/documents/search", headers=alice, json={"query": "x", "k": 20}).json)


def test_the_same_content_uploaded_twice_is_stored_once(app):
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice)
    first = upload(client, alice, collection, ("a.txt", b"Only once, please.")).json["files"][0]
    again = upload(client, alice, collection, ("b.txt", b"Only once, please.")).json["files"][0]
    assert again["id"] == first["id"] and again["duplicate"] is True
    assert len(stored_chunks(app)) == first["chunks"]


def test_bad_input_is_a_clear_error_and_nothing_is_half_stored(make_app, tmp_path, fake_upstream, with_worker):
    app = with_worker(make_app(**document_sections(tmp_path, fake_upstream, max_file_bytes=50_000, max_pages=2)))
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice)
    cases = [(("tool.exe", b"MZ..."), 415, "unsupported_type"),
             (("big.txt", b"x " * 30_000), 413, "file_too_large"),
             (("broken.pdf", b"%PDF-1.7\n garbage that is no pdf"), 422, "unreadable_document"),
             (("locked.pdf", pdf(["secret"], password="hunter22")), 422, "unreadable_document"),
             (("empty.txt", b"   \n"), 422, "unreadable_document"),
             (("fake.docx", b"not a zip"), 422, "unreadable_document"),
             (("cut.pdf", pdf(["a page"])[:-40]), 422, "unreadable_document"),
             (("many.pdf", pdf(["p"] * 3)), 413, "file_too_large")]
    for (name, data), status, code in cases:
        # a good file beside the bad one: the upload is refused whole
        answer = upload(client, alice, collection, ("good.txt", b"A perfectly good file."), (name, data))
        assert answer.status_code == status, (name, answer.data)
        assert answer.json["error"]["code"] == code and name in answer.json["error"]["message"]
    assert client.get(f"/documents/collections/{collection}", headers=alice).json["files"] == []
    assert stored_chunks(app) == []
    assert client.post("/documents/search", headers=alice, json={"query": "q" * 2001}).status_code == 400
    assert client.post("/documents/collections", headers=alice, json={"name": ""}).status_code == 400
    assert client.post("/documents/collections", headers=alice, json={"name": "a:b"}).status_code == 400
    assert client.post("/documents/collections/nope/files", headers=alice, data={}).status_code == 404


def test_an_upload_answers_at_once_and_the_file_shows_its_progress_until_ready(app):
    client, alice, bob = app.test_client(), bearer(app, "alice"), bearer(app, "bob")
    collection = make_collection(client, alice)
    text = "\n\n".join(f"Paragraph {i} talks about topic number {i} in some detail." for i in range(200)).encode()
    answer = upload(client, alice, collection, ("long.txt", text), wait=False)
    assert answer.status_code == 202
    started = answer.json["files"][0]
    assert (started["status"], started["duplicate"]) == ("queued", False)
    seen = set()
    deadline = time.monotonic() + 60
    while (state := client.get(f"/documents/files/{started['id']}", headers=alice).json)["status"] != "ready":
        seen.add(state["status"])
        assert state["status"] in ("queued", "processing") and time.monotonic() < deadline, state
        time.sleep(0.02)
    assert state["progress"] == 1.0 and state["chunks"] > 10 and state["attempts"] == 1
    assert "processing" in seen
    assert client.get(f"/documents/files/{started['id']}", headers=bob).status_code == 404
    assert client.delete(f"/documents/files/{started['id']}", headers=bob).status_code == 404
    assert client.delete(f"/documents/files/{started['id']}", headers=alice).status_code == 204
    assert client.get(f"/documents/files/{started['id']}", headers=alice).status_code == 404
    assert client.post("/documents/search", headers=alice, json={"query": "topic number 7"}).json["hits"] == []
    assert stored_chunks(app, timeout=20, expect=lambda found: not found) == []  # purged by the worker


def test_collections_are_models_the_openai_client_streams_cited_answers_from(app, live_server):
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice, "handbook")
    upload(client, alice, collection, ("report.pdf", pdf(REPORT_PAGES)))
    server = live_server(app)
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key=alice["Authorization"].split()[1])
    assert "docs:handbook" in {m.id for m in api.models.list()}
    stream = api.chat.completions.create(model="docs:handbook", stream=True,
                                         messages=[{"role": "user", "content": "What is the cooling tower budget?"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "Sources:\n[1] report.pdf, page 2" in text
    plain = api.chat.completions.create(model="docs:handbook", messages=[{"role": "user", "content": "budget?"}])
    assert "[1] report.pdf" in plain.choices[0].message.content
    bob = openai.OpenAI(base_url=f"{server.url}/v1", api_key=bearer(app, "bob")["Authorization"].split()[1])
    assert "docs:handbook" not in {m.id for m in bob.models.list()}
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.create(model="docs:handbook", messages=[{"role": "user", "content": "budget?"}])


def test_v1_embeddings_answers_in_openais_shape_and_is_metered(app, live_server):
    server = live_server(app)
    alice = bearer(app, "alice")
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key=alice["Authorization"].split()[1])
    result = api.embeddings.create(model="all-MiniLM-L6-v2", input=["hello world", "goodbye"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384 and result.usage.prompt_tokens > 0
    row = settled_rows(app)[0]
    assert (row["model"], row["backend"], row["actor_id"]) == ("all-MiniLM-L6-v2", "documents", "alice")
    assert row["prompt_tokens"] == result.usage.prompt_tokens
    with pytest.raises(openai.NotFoundError):
        api.embeddings.create(model="text-embedding-3-large", input="x")
    # listed where clients look for it, and answering to the name Open WebUI's RAG settings use
    assert "all-MiniLM-L6-v2" in {m.id for m in api.models.list().data}
    named = api.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input="hello world")
    assert named.data[0].embedding == result.data[0].embedding


def test_file_names_lose_control_and_bidi_characters_and_stay_text_in_cited_answers(app):
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice)
    names = {"a\x00b\u202egnp.exe\u200b.txt": "abgnp.exe.txt", "[click](javascript:alert(1)).md": None}
    uploaded = upload(client, alice, collection, *[(name, f"Pumps need oil, says file {n}.".encode())
                                                   for n, name in enumerate(names)])
    stored = [f["name"] for f in uploaded.json["files"]]
    assert stored == ["abgnp.exe.txt", "[click](javascript:alert(1)).md"]
    answer = client.post("/documents/ask", headers=alice, json={"question": "Do pumps need oil?", "k": 2}).json
    assert "\\[click\\]\\(javascript:alert\\(1\\)\\).md" in answer["answer"]
    assert "](javascript:" not in answer["answer"].replace("\\]\\(", "")
    assert {s["file_name"] for s in answer["sources"]} == set(stored)  # the structured list keeps the name


def test_html_entities_stay_text_and_never_become_markup_in_cited_answers(app):
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice)
    page = (b"<html><body><h1>&lt;img src=x onerror=alert(1)&gt; &amp;lt;b&amp;gt;</h1>"
            b"<p>Valves need grease &lt;script&gt;alert(1)&lt;/script&gt; every spring.</p></body></html>")
    assert upload(client, alice, collection, ("valves.html", page)).json["files"][0]["status"] == "ready"
    answer = client.post("/documents/ask", headers=alice, json={"question": "When do valves need grease?"}).json
    sources_line = answer["answer"].split("Sources:", 1)[1]
    assert "\\<img src=x onerror=alert\\(1\\)\\> \\&lt;b\\&gt;" in sources_line  # shown as the page's text
    assert re.search(r"(?<!\\)[<>&]", sources_line) is None  # no tag or entity a renderer would act on
    hit = answer["sources"][0]
    assert hit["heading"] == "<img src=x onerror=alert(1)> &lt;b&gt;"  # the page's text, as text
    assert "<script>alert(1)</script>" in hit["text"]
