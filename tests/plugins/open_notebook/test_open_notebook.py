"""Notebooks through the portal, against a local Open Notebook 1.14.x stand-in
(tests/fake_open_notebook.py): one user's notebooks, sources, notes, search results and answers
never reach another user."""
from __future__ import annotations

import json

import pytest

from conftest import bearer, chat_plugins, free_port, settled_rows
from fake_open_notebook import FakeOpenNotebook

PASSWORD = "notebook-password-4821"


@pytest.fixture
def notebook_server():
    fake = FakeOpenNotebook(PASSWORD)
    yield fake
    fake.stop()


def notebook_sections(url: str, **section) -> dict:
    return {"open_notebook": {"url": url, "password": PASSWORD, "heartbeat_seconds": 0.2, **section},
            "ledger": {"flush_seconds": 0.05}, "observability": {"health_cache_seconds": 0}}


@pytest.fixture
def app(make_app, notebook_server):
    return make_app(**notebook_sections(notebook_server.url))


def make_notebook(client, headers, name="Research") -> str:
    created = client.post("/notebooks", json={"name": name, "description": "d"}, headers=headers)
    assert created.status_code == 200, created.data
    return created.json["id"]


def test_a_users_notebooks_are_theirs_alone(app):
    client = app.test_client()
    alice, bob, root = bearer(app, "alice"), bearer(app, "bob"), bearer(app, "root", "admin")
    mine = make_notebook(client, alice)
    theirs = make_notebook(client, bob, "Bob's")
    assert [n["id"] for n in client.get("/notebooks", headers=alice).json] == [mine]
    assert [n["id"] for n in client.get("/notebooks", headers=bob).json] == [theirs]
    assert {n["id"] for n in client.get("/notebooks", headers=root).json} == {mine, theirs}
    for method, suffix, body in (("GET", "", None), ("PUT", "", {"name": "x"}), ("DELETE", "", None),
                                 ("GET", "/sources", None), ("POST", "/sources", {"type": "text", "content": "x"}),
                                 ("GET", "/notes", None), ("POST", "/notes", {"content": "x"}),
                                 ("POST", "/search", {"query": "x"}), ("POST", "/ask", {"question": "x"}),
                                 ("POST", "/ask/simple", {"question": "x"})):
        refused = client.open(f"/notebooks/{mine}{suffix}", method=method, json=body, headers=bob)
        assert refused.status_code == 404, (method, suffix, refused.status_code)
    assert client.get(f"/notebooks/{mine}", headers=root).status_code == 200
    assert client.get(f"/notebooks/{mine}", headers=alice).json["name"] == "Research"


def test_sources_of_every_kind_live_in_their_notebook(app, notebook_server):
    client = app.test_client()
    alice, bob = bearer(app, "alice"), bearer(app, "bob")
    notebook, other = make_notebook(client, alice), make_notebook(client, alice, "Other")
    link = client.post(f"/notebooks/{notebook}/sources", headers=alice,
                       json={"type": "link", "url": "https://93.184.215.14/paper"}).json
    text = client.post(f"/notebooks/{notebook}/sources", headers=alice,
                       json={"type": "text", "content": "zebras are striped", "title": "Zebras"}).json
    upload = client.post(f"/notebooks/{notebook}/sources", headers=alice, content_type="multipart/form-data",
                         data={"file": (__import__("io").BytesIO(b"uploaded words"), "notes.txt")})
    assert upload.status_code == 200, upload.data
    assert notebook_server.state["sources"][upload.json["id"]]["full_text"] == "uploaded words"
    listed = {s["id"] for s in client.get(f"/notebooks/{notebook}/sources", headers=alice).json}
    assert listed == {link["id"], text["id"], upload.json["id"]}
    assert client.get(f"/notebooks/{other}/sources", headers=alice).json == []
    assert client.get(f"/notebooks/{notebook}/sources/{text['id']}/status", headers=alice).json["status"] == "completed"
    assert client.get(f"/notebooks/{other}/sources/{text['id']}", headers=alice).status_code == 404
    bobs = make_notebook(client, bob)
    assert client.get(f"/notebooks/{bobs}/sources/{text['id']}", headers=bob).status_code == 404
    assert client.delete(f"/notebooks/{notebook}/sources/{text['id']}", headers=alice).status_code == 200
    assert text["id"] not in notebook_server.state["sources"]


def test_notes_stay_in_their_notebook(app):
    client = app.test_client()
    alice, bob = bearer(app, "alice"), bearer(app, "bob")
    notebook, bobs = make_notebook(client, alice), make_notebook(client, bob)
    note = client.post(f"/notebooks/{notebook}/notes", headers=alice, json={"title": "T", "content": "secret plan"}).json
    assert [n["id"] for n in client.get(f"/notebooks/{notebook}/notes", headers=alice).json] == [note["id"]]
    assert client.put(f"/notebooks/{notebook}/notes/{note['id']}", headers=alice,
                      json={"content": "new plan"}).json["content"] == "new plan"
    for method in ("GET", "PUT", "DELETE"):
        assert client.open(f"/notebooks/{bobs}/notes/{note['id']}", method=method, json={"content": "x"},
                           headers=bob).status_code == 404
    assert client.get(f"/notebooks/{bobs}/notes", headers=bob).json == []
    assert client.delete(f"/notebooks/{notebook}/notes/{note['id']}", headers=alice).status_code == 200


def test_a_search_only_ever_returns_the_callers_sources_and_notes(app, notebook_server):
    client = app.test_client()
    alice, bob, root = bearer(app, "alice"), bearer(app, "bob"), bearer(app, "root", "admin")
    first, second, bobs = make_notebook(client, alice), make_notebook(client, alice, "B"), make_notebook(client, bob)
    a1 = client.post(f"/notebooks/{first}/sources", headers=alice, json={"type": "text", "content": "zebra one"}).json
    a2 = client.post(f"/notebooks/{second}/notes", headers=alice, json={"content": "zebra two"}).json
    b1 = client.post(f"/notebooks/{bobs}/sources", headers=bob, json={"type": "text", "content": "zebra bob"}).json
    everything = client.post("/notebooks/search", headers=alice, json={"query": "zebra"}).json
    assert {r["parent_id"] for r in everything["results"]} == {a1["id"], a2["id"]}
    one = client.post(f"/notebooks/{first}/search", headers=alice, json={"query": "zebra"}).json
    assert [r["parent_id"] for r in one["results"]] == [a1["id"]]
    assert [r["parent_id"] for r in client.post("/notebooks/search", headers=bob, json={"query": "zebra"}).json["results"]] \
        == [b1["id"]]
    assert len(client.post("/notebooks/search", headers=root, json={"query": "zebra"}).json["results"]) == 3
    assert notebook_server.state["calls"].count(("POST", "/api/search")) == 4
    limited = client.post("/notebooks/search", headers=alice, json={"query": "zebra", "limit": 1}).json
    assert limited["total_count"] == 1


def test_asking_a_notebook_answers_from_that_notebook_alone_and_is_metered(app):
    client = app.test_client()
    alice, bob = bearer(app, "alice"), bearer(app, "bob")
    notebook = make_notebook(client, alice)
    client.post(f"/notebooks/{notebook}/sources", headers=alice, json={"type": "text", "content": "a", "title": "Mine"})
    bobs = make_notebook(client, bob)
    client.post(f"/notebooks/{bobs}/sources", headers=bob, json={"type": "text", "content": "b", "title": "Bob's secret"})
    simple = client.post(f"/notebooks/{notebook}/ask/simple", headers=alice, json={"question": "what is here?"})
    assert simple.status_code == 200
    assert simple.json == {"answer": "From 1 items (Mine): the answer to 'what is here?'.", "question": "what is here?"}
    streamed = client.post(f"/notebooks/{notebook}/ask", headers=alice, json={"question": "and now?"})
    assert streamed.mimetype == "text/event-stream"
    events = [block for block in streamed.data.split(b"\n\n") if block and not block.startswith(b":")]
    assert events[0].startswith(b"event: answer") and b"Bob" not in streamed.data
    assert events[-1] == b"event: done\ndata: {}"
    rows = settled_rows(app, 2)
    assert {(r["backend"], r["model"], r["outcome"], r["actor_id"]) for r in rows} == \
        {("open_notebook", "notebook:ask", "ok", "alice")}
    assert all(r["usage_source"] == "counted" and r["completion_tokens"] > 0 for r in rows)
    usage = client.get("/observability/usage?group_by=model", headers=alice).json
    assert "notebook:ask" in json.dumps(usage)


def test_a_slow_answer_gets_heartbeats(app, notebook_server):
    client = app.test_client()
    alice = bearer(app, "alice")
    notebook = make_notebook(client, alice)
    notebook_server.state["slow"] = 0.7
    streamed = client.post(f"/notebooks/{notebook}/ask", headers=alice, json={"question": "q"})
    assert streamed.data.startswith(b": keep-alive") and b"event: done" in streamed.data


def test_a_wrong_password_is_the_portals_fault_never_the_callers(make_app, notebook_server):
    app = make_app(**notebook_sections(notebook_server.url, password="not-the-password-93"))
    answer = app.test_client().get("/notebooks", headers=bearer(app, "alice"))
    assert answer.status_code == 502 and answer.json["error"]["code"] == "upstream_auth_failed"
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    assert health["components"]["open_notebook"]["status"] == "down"


def test_open_notebook_failing_is_a_clear_error_and_never_touches_chat(make_app, notebook_server, fake_upstream):
    app = make_app(**{**chat_plugins(fake_upstream), **{"open_notebook": notebook_sections(notebook_server.url)["open_notebook"]}})
    client, alice = app.test_client(), bearer(app, "alice")
    notebook = make_notebook(client, alice)
    notebook_server.state["fail_answers"] = True
    failed = client.post(f"/notebooks/{notebook}/ask", headers=alice, json={"question": "q"})
    assert b"event: error" in failed.data
    assert client.post(f"/notebooks/{notebook}/ask/simple", headers=alice, json={"question": "q"}).status_code == 502
    notebook_server.state["fail_answers"] = False
    notebook_server.state["garbage"] = True
    garbage = client.get("/notebooks", headers=alice)
    assert garbage.status_code == 502 and garbage.json["error"]["code"] == "upstream_malformed"
    notebook_server.state["garbage"], notebook_server.state["down"] = False, True
    assert client.get("/notebooks", headers=alice).status_code == 502
    health = client.get("/observability/health", headers=bearer(app, "root", "admin")).json
    assert health["components"]["open_notebook"]["status"] == "down"
    chat = client.post("/v1/chat/completions", headers=alice,
                       json={"model": fake_upstream.models[0], "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200
    rows = settled_rows(app, 3)
    assert sum(r["model"] == "notebook:ask" and r["outcome"] != "ok" for r in rows) == 2
    gone = make_app(**notebook_sections(f"http://127.0.0.1:{free_port()}"))
    answer = gone.test_client().get("/notebooks", headers=bearer(gone, "alice"))
    assert answer.status_code == 502 and answer.json["error"]["code"] == "upstream_unreachable"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8001/", "http://localhost/", "http://[::1]/", "http://10.0.0.5/",
                                 "http://169.254.169.254/latest/meta-data/", "http://192.168.1.1/",
                                 "http://2130706433/", "http://0x7f.1/", "http://[::ffff:127.0.0.1]/",
                                 "http://100.64.0.1/", "http://0.0.0.0/", "https://user:pw@93.184.215.14/",
                                 "http://does-not-resolve.invalid/"])
def test_a_link_source_may_not_point_inside_the_network(app, notebook_server, url):
    client, alice = app.test_client(), bearer(app, "alice")
    notebook = make_notebook(client, alice)
    refused = client.post(f"/notebooks/{notebook}/sources", headers=alice, json={"type": "link", "url": url})
    assert refused.status_code == 400 and refused.json["error"]["code"] == "url_not_allowed", url
    assert not notebook_server.state["sources"]  # Open Notebook never saw it


def test_an_admin_allow_list_lets_a_named_internal_host_through(make_app, notebook_server, tmp_path):
    from conftest import base_config

    config = base_config(tmp_path, **notebook_sections(notebook_server.url))
    config["portal"]["outbound_allow"] = ["localhost", "10.1.0.0/16"]
    app = make_app(config=config)
    client, alice = app.test_client(), bearer(app, "alice")
    notebook = make_notebook(client, alice)
    for url in ("http://localhost:9000/wiki", "http://10.1.2.3/page"):
        created = client.post(f"/notebooks/{notebook}/sources", headers=alice, json={"type": "link", "url": url})
        assert created.status_code == 200, (url, created.data)
    assert client.post(f"/notebooks/{notebook}/sources", headers=alice,
                       json={"type": "link", "url": "http://10.2.0.1/"}).status_code == 400


def test_every_address_a_name_resolves_to_is_checked():
    from agent_portal import PortalError
    from agent_portal.outbound import OutboundPolicy

    answers = {"mixed.example": ["93.184.215.14", "10.0.0.7"], "public.example": ["93.184.215.14", "2606:2800::1"]}

    def resolve(host, port, proto=0):
        return [(None, None, None, "", (address, port)) for address in answers[host]]

    policy = OutboundPolicy([], resolve=resolve)
    assert policy.check("https://public.example/a") == "https://public.example/a"
    with pytest.raises(PortalError) as refused:
        policy.check("https://mixed.example/a")
    assert "10.0.0.7" in refused.value.message


def test_hostile_notebook_requests_get_clear_errors(app):
    client, alice = app.test_client(), bearer(app, "alice")
    notebook = make_notebook(client, alice)
    cases = [("POST", "/notebooks", b"{nope", 400), ("POST", "/notebooks", b"{}", 400),
             ("POST", "/notebooks", json.dumps({"name": 5}).encode(), 400),
             ("POST", f"/notebooks/{notebook}/sources", json.dumps({"type": "link", "url": "file:///etc/passwd"}).encode(), 400),
             ("POST", f"/notebooks/{notebook}/sources", json.dumps({"type": "exec"}).encode(), 400),
             ("POST", f"/notebooks/{notebook}/notes", json.dumps({"content": "x", "note_type": "system"}).encode(), 400),
             ("POST", f"/notebooks/{notebook}/search", json.dumps({"query": "x", "limit": 10**9}).encode(), 400),
             ("POST", f"/notebooks/{notebook}/ask", json.dumps({"question": ""}).encode(), 400),
             ("GET", "/notebooks/..%2Fapi%2Fnotebooks", None, 404), ("GET", "/notebooks/notebook:abc;DROP", None, 404)]
    for method, path, body, status in cases:
        answer = client.open(path, method=method, data=body, headers={**alice, "Content-Type": "application/json"})
        assert answer.status_code == status, (path, body, answer.status_code)
        assert "error" in answer.json
    assert client.get("/notebooks").status_code == 401


def test_a_server_too_slow_to_answer_is_a_timeout(make_app, notebook_server):
    app = make_app(**notebook_sections(notebook_server.url, timeout_seconds=0.3))
    notebook_server.state["slow"] = 1.0
    answer = app.test_client().get("/notebooks", headers=bearer(app, "alice"))
    assert answer.status_code == 504 and answer.json["error"]["code"] == "upstream_timeout"
