"""Documents metered and limited like chat: asks and searches admitted once and billed, uploads
refused before they are stored when their embedding would run past a budget, the answer model's
roles kept, and the embedders and the worker's health."""
from __future__ import annotations

import io
import time

import pytest

from agent_portal import portal_of

from conftest import bearer, settled_rows
from documents_files import docx
from documents_worker import document_sections, make_collection, stored_chunks, upload

pytestmark = pytest.mark.integration


def test_asks_and_searches_are_limited_like_chat(make_app, tmp_path, fake_upstream, with_worker):
    app = with_worker(make_app(**document_sections(tmp_path, fake_upstream), rate_limits={"roles": {"user": {"requests_per_minute": 2}}}))
    client, alice = app.test_client(), bearer(app, "alice")
    make_collection(client, alice)
    assert client.post("/documents/search", headers=alice, json={"query": "q"}).status_code == 200
    assert client.post("/documents/search", headers=alice, json={"query": "q"}).status_code == 200
    assert client.post("/documents/search", headers=alice, json={"query": "q"}).status_code == 429


def test_an_ask_is_one_request_and_one_row_and_a_refused_ask_bills_nothing(make_app, tmp_path, fake_upstream,
                                                                        with_worker):
    sections = document_sections(tmp_path, fake_upstream)
    sections["documents"]["embedder"]["input_cost_per_token"] = 0.001
    app = with_worker(make_app(**sections, rate_limits={"roles": {"user": {"requests_per_minute": 2}}}))
    client, alice = app.test_client(), bearer(app, "alice")
    make_collection(client, alice)
    codes = [client.post("/documents/ask", headers=alice, json={"question": "q?"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    rows = settled_rows(app, 3)
    assert sorted((r["model"], r["outcome"]) for r in rows) == [
        ("documents:ask", "ok"), ("documents:ask", "ok"), ("documents:ask", "refused")]
    refused = next(r for r in rows if r["outcome"] == "refused")
    assert refused["cost"] == 0 and refused["prompt_tokens"] == 0
    answered = next(r for r in rows if r["outcome"] == "ok")
    assert answered["cost"] >= 0.001 * 4  # the query's embedding, billed in the ask's own row


def test_an_upload_whose_embedding_would_run_far_past_a_budget_is_refused_before_it_is_stored(make_app, tmp_path,
                                                                                             fake_upstream):
    sections = document_sections(tmp_path, fake_upstream)
    sections["documents"]["embedder"]["input_cost_per_token"] = 0.0001
    app = make_app(**sections, rate_limits={"roles": {"user": {"daily_budget_usd": 0.05}}})
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice)
    big = b"Pumps, valves and the maintenance of cooling towers. " * 4000  # 200 KB: about $6.7 of embedding
    refused = upload(client, alice, collection, ("big.txt", big), wait=False)
    assert refused.status_code == 429 and refused.json["error"]["code"] == "daily_budget_usd"
    assert client.get(f"/documents/collections/{collection}", headers=alice).json["files"] == []
    small = upload(client, alice, collection, ("small.txt", b"A short note about valves."), wait=False)
    assert small.status_code == 202
    rows = settled_rows(app, 1)
    assert [(r["outcome"], r["cost"]) for r in rows if r["outcome"] == "refused"] == [("refused", 0)]


def test_an_upload_whose_parsed_text_is_far_longer_than_its_size_is_refused_before_embedding(
        make_app, tmp_path, fake_upstream, with_worker, redis_url):
    sections = document_sections(tmp_path, fake_upstream)
    sections["documents"]["embedder"]["input_cost_per_token"] = 0.0001
    app = with_worker(make_app(**sections, rate_limits={"storage": redis_url,
                                                        "roles": {"user": {"daily_budget_usd": 5.0}}}))
    client, user = app.test_client(), bearer(app, f"zip-{time.monotonic_ns()}")
    collection = make_collection(client, user)
    packed = docx("Valves", ["Check every valve of the cooling towers each week. " * 2000] * 3)
    assert len(packed) < 60_000  # its size promises at most about $2 of embedding; its text is about $10
    ended = upload(client, user, collection, ("packed.docx", packed)).json["files"][0]
    assert ended["status"] == "failed" and "daily_budget_usd" in ended["error"]
    assert stored_chunks(app) == []
    rows = settled_rows(app, 1)
    deadline = time.monotonic() + 5
    while not [r for r in rows if r["outcome"] == "refused"] and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = settled_rows(app, 1)
    refused = [r for r in rows if r["outcome"] == "refused"]
    assert len(refused) == 1 and refused[0]["cost"] == 0 and refused[0]["status"] == 429


def test_the_answer_model_keeps_its_roles_in_asks_and_docs_models(make_app, tmp_path, fake_upstream, with_worker):
    sections = document_sections(tmp_path, fake_upstream, answer_model="staff-only")
    sections["chat"]["models"] = {"staff-only": {"backend": "fake", "model": "echo", "roles": ["admin"]}}
    app = with_worker(make_app(**sections))
    client, alice, root = app.test_client(), bearer(app, "alice"), bearer(app, "root", "admin")
    make_collection(client, alice, "handbook")
    before = len(fake_upstream.requests)
    refused = client.post("/documents/ask", headers=alice, json={"question": "budget?"})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "model_forbidden"
    assert "staff-only" in refused.json["error"]["message"]
    as_model = client.post("/v1/chat/completions", headers=alice,
                           json={"model": "docs:handbook", "messages": [{"role": "user", "content": "budget?"}]})
    assert as_model.status_code == 403
    make_collection(client, root, "manual")
    assert not fake_upstream.requests[before:]
    assert client.post("/documents/ask", headers=root, json={"question": "budget?"}).status_code == 200


def test_an_embedding_model_of_a_chat_backend_can_be_the_embedder(make_app, tmp_path, fake_upstream, with_worker):
    sections = document_sections(tmp_path, fake_upstream)
    sections["documents"]["embedder"] = {"kind": "openai", "model": "embed-16"}
    sections["documents"]["search_mode"] = "dense"  # the score is then the cosine, 1.0 for the same text
    app = with_worker(make_app(**sections))
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice)
    assert upload(client, alice, collection, ("a.txt", b"exactly this sentence")).status_code == 202
    hits = client.post("/documents/search", headers=alice, json={"query": "a\nexactly this sentence"}).json["hits"]
    # the chunk was embedded with its document's title before it: the same text is the same vector
    assert hits[0]["file_name"] == "a.txt" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    embedded = [r for r in fake_upstream.requests if r.get("model") == "embed-16"]
    assert [r["input"] for r in embedded][-2:] == [["a\nexactly this sentence"], ["a\nexactly this sentence"]]
    assert hits[0]["text"] == "exactly this sentence"  # what is stored and shown is the chunk alone
    assert len(stored_chunks(app)) == 1


def test_an_upload_may_be_as_large_as_its_files_and_a_larger_one_is_refused_naming_the_limits(make_app, tmp_path,
                                                                                            fake_upstream):
    app = make_app(**document_sections(tmp_path, fake_upstream, max_files_per_upload=2))
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice)
    five_mb = b"Five megabytes of plain text about pumps and valves.\n" * 100_000  # past portal.max_body_bytes
    assert len(five_mb) > portal_of(app).settings["max_body_bytes"]
    assert upload(client, alice, collection, ("big.txt", five_mb), wait=False).status_code == 202
    limit = 2 * 20 * 1024 * 1024 + 1024 * 1024
    too_big = client.post(f"/documents/collections/{collection}/files", headers=alice,
                          content_type="multipart/form-data", data={"file": [(io.BytesIO(b"x" * (limit + 1)), "a.txt")]})
    assert too_big.status_code == 413 and too_big.json["error"]["code"] == "body_too_large"
    message = too_big.json["error"]["message"]
    assert str(limit) in message and "documents.max_files_per_upload" in message and "documents.max_file_bytes" in message
    operation = client.get("/openapi.json", headers=alice).json["paths"]["/documents/collections/{collection_id}/files"]["post"]
    assert operation["x-max-body-bytes"] == limit and "20971520 bytes" in operation["summary"]


def test_the_default_onnx_embedder_agrees_with_the_torch_model_it_replaces():
    import math

    from agent_portal.plugins.documents.embedders import LocalEmbedder, OnnxEmbedder

    texts = ["How much is the maintenance budget for the cooling towers?", "json.dumps() (in module json)",
             "Paragraph " * 400]  # past the 256 tokens the model reads
    onnx, torch = OnnxEmbedder("all-MiniLM-L6-v2", 16).embed(texts), LocalEmbedder("all-MiniLM-L6-v2", 16).embed(texts)
    for a, b in zip(onnx, torch):
        assert len(a) == len(b) == 384 and abs(math.fsum(x * x for x in a) - 1) < 1e-4
        assert math.fsum(x * y for x, y in zip(a, b)) > 0.995


def test_health_says_when_no_documents_worker_answers_and_what_it_holds_when_one_does(make_app, tmp_path,
                                                                                      fake_upstream, with_worker):
    app = make_app(**document_sections(tmp_path, fake_upstream))  # chat_plugins: health not cached
    client, root = app.test_client(), bearer(app, "root", "admin")
    down = client.get("/observability/health", headers=root).json["components"]["documents"]
    assert down["status"] == "down" and "start `agent-portal worker`" in down["detail"]
    make_collection(client, root)
    refused = client.post("/documents/search", headers=root, json={"query": "q"})
    assert (refused.status_code, refused.json["error"]["code"]) == (503, "documents_worker_unavailable")
    with_worker(app)
    deadline = time.monotonic() + 60
    while (up := client.get("/observability/health", headers=root).json["components"]["documents"])["status"] != "up":
        assert time.monotonic() < deadline, up
        time.sleep(0.2)
    assert (up["chunks"], up["queued"]) == (0, 0) and "lancedb" in up["detail"]
