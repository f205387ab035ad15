"""Agents through the portal, against a real `langgraph dev`: who may see and run what."""
from __future__ import annotations

import json

import pytest
import requests

from conftest import bearer
from langgraph_calls import HELLO, agent_sections, new_thread

pytestmark = pytest.mark.integration


@pytest.fixture
def app(make_app, langgraph_url):
    return make_app(**agent_sections(langgraph_url))


# --- who may see what ---------------------------------------------------------------------------------


def test_an_anonymous_caller_gets_401_on_every_agents_route(app):
    client = app.test_client()
    for method, path in (("POST", "/agents/threads"), ("POST", "/agents/threads/search"),
                         ("POST", "/agents/runs/stream"), ("POST", "/agents/assistants/search"),
                         ("GET", "/agents/threads/0b6c1cb5-64c5-4a4c-8a39-5a1a1e0f6f3c")):
        assert client.open(path, method=method, json={}).status_code == 401, path


def test_a_thread_deleted_through_one_worker_is_forgotten_by_every_worker(make_app, langgraph_url, redis_url,
                                                                          tmp_path):
    import uuid

    from conftest import base_config

    workers = []
    for name in ("one", "two"):
        config = base_config(tmp_path / name, **agent_sections(langgraph_url))
        config["portal"]["redis_url"] = redis_url
        workers.append(make_app(config=config))
    one, two = (w.test_client() for w in workers)
    thread = str(uuid.uuid4())  # its own users too: the server is shared by every test
    alice, bob = bearer(workers[0], f"alice-{thread}"), bearer(workers[0], f"bob-{thread}")
    assert one.post("/agents/threads", json={"thread_id": thread}, headers=alice).status_code == 200
    assert two.get(f"/agents/threads/{thread}", headers=alice).status_code == 200  # worker two knows alice owns it
    assert one.delete(f"/agents/threads/{thread}", headers=alice).status_code in (200, 204)
    assert one.post("/agents/threads", json={"thread_id": thread}, headers=bob).status_code == 200  # the id again
    assert two.get(f"/agents/threads/{thread}", headers=alice).status_code == 404
    assert two.get(f"/agents/threads/{thread}", headers=bob).status_code == 200


def test_a_thread_belongs_to_its_creator_whatever_owner_the_body_names(app):
    client = app.test_client()
    alice, bob, root = bearer(app, "alice"), bearer(app, "bob"), bearer(app, "root", "admin")
    created = client.post("/agents/threads", json={"metadata": {"portal_owner": "bob", "topic": "x"}},
                          headers=alice).json
    assert created["metadata"] == {"portal_owner": "alice", "topic": "x"}
    thread = created["thread_id"]
    assert client.get(f"/agents/threads/{thread}", headers=alice).status_code == 200
    assert client.get(f"/agents/threads/{thread}", headers=root).status_code == 200
    for method, part in (("GET", ""), ("PATCH", ""), ("GET", "/state"), ("POST", "/state"), ("GET", "/history"),
                         ("POST", "/history"), ("GET", "/runs"), ("POST", "/copy"), ("DELETE", "")):
        refused = client.open(f"/agents/threads/{thread}{part}", method=method, json={}, headers=bob)
        assert refused.status_code == 404, (method, part, refused.status_code)
        assert refused.json["error"]["code"] == "thread_not_found"
    # a patch cannot hand the thread to someone else
    patched = client.patch(f"/agents/threads/{thread}", json={"metadata": {"portal_owner": "bob"}}, headers=alice)
    assert patched.json["metadata"]["portal_owner"] == "alice"
    assert client.get(f"/agents/threads/{thread}", headers=bob).status_code == 404


def test_a_search_finds_only_the_callers_threads_whatever_filter_it_sends(app):
    client = app.test_client()
    alice, bob, root = bearer(app, "alice"), bearer(app, "bob"), bearer(app, "root", "admin")
    thread = new_thread(client, alice)
    for body in ({}, {"metadata": {"portal_owner": "alice"}}, {"limit": 1000}, {"status": "idle"}):
        found = client.post("/agents/threads/search", json=body, headers=bob).json
        assert thread not in [t["thread_id"] for t in found], body
        assert all(t["metadata"].get("portal_owner") == "bob" for t in found)
    assert client.post("/agents/threads/count", json={"metadata": {"portal_owner": "alice"}}, headers=bob).json == 0
    assert thread in [t["thread_id"] for t in client.post("/agents/threads/search", json={}, headers=alice).json]
    assert thread in [t["thread_id"] for t in
                      client.post("/agents/threads/search", json={"limit": 1000}, headers=root).json]


def test_a_run_on_someone_elses_thread_is_refused_before_the_server_sees_it(app, langgraph_url):
    client = app.test_client()
    thread = new_thread(client, bearer(app, "alice"))
    bob = bearer(app, "bob")
    for mode in ("stream", "wait", ""):
        path = f"/agents/threads/{thread}/runs" + (f"/{mode}" if mode else "")
        refused = client.post(path, json={"assistant_id": "echo", "input": HELLO}, headers=bob)
        assert refused.status_code == 404, mode
    assert requests.get(f"{langgraph_url}/threads/{thread}/runs", timeout=5).json() == []


def test_a_run_that_creates_its_thread_makes_it_the_callers(app):
    client = app.test_client()
    alice, bob = bearer(app, "alice"), bearer(app, "bob")
    thread = "5d0f3d6e-2f7b-4a53-9a57-6c0e2b5b9b1a"
    answer = client.post(f"/agents/threads/{thread}/runs/wait",
                         json={"assistant_id": "echo", "input": HELLO, "if_not_exists": "create"}, headers=alice)
    assert answer.status_code == 200, answer.data
    assert client.get(f"/agents/threads/{thread}", headers=alice).json["metadata"]["portal_owner"] == "alice"
    assert client.post(f"/agents/threads/{thread}/runs/wait", headers=bob,
                       json={"assistant_id": "echo", "input": HELLO, "if_not_exists": "create"}).status_code == 404


def test_hostile_run_requests_get_clear_errors(app):
    client = app.test_client()
    alice = bearer(app, "alice")
    cases = [
        ("/agents/runs/wait", b"{not json", 400, "invalid_json"),
        ("/agents/runs/wait", b"[1, 2]", 400, "invalid_json"),
        ("/agents/runs/wait", b'{"input": {}}', 400, "invalid_run"),
        ("/agents/runs/wait", json.dumps({"assistant_id": "echo", "webhook": "http://169.254.169.254/"}).encode(),
         400, "webhook_not_allowed"),
        ("/agents/runs/stream", json.dumps({"assistant_id": "echo", "on_disconnect": "continue"}).encode(),
         400, "invalid_run"),
        ("/agents/runs/wait", json.dumps({"assistant_id": "echo", "on_completion": "keep"}).encode(),
         400, "invalid_run"),
        ("/agents/runs/wait", json.dumps({"assistant_id": "no-such-graph"}).encode(), 404, "assistant_not_found"),
        ("/agents/runs/wait", json.dumps({"assistant_id": "../threads"}).encode(), 404, "assistant_not_found"),
    ]
    for path, body, status, code in cases:
        answer = client.post(path, data=body, headers={**alice, "Content-Type": "application/json"})
        assert answer.status_code == status, (body, answer.data)
        assert answer.json["error"]["code"] == code, body
    for thread in ("..", "not-a-uuid", "%2e%2e"):
        assert client.get(f"/agents/threads/{thread}/state", headers=alice).status_code == 404


def test_assistants_are_readable_by_users_and_changed_only_by_admins(app):
    client = app.test_client()
    alice, root = bearer(app, "alice"), bearer(app, "root", "admin")
    found = client.post("/agents/assistants/search", json={}, headers=alice).json
    assert {a["graph_id"] for a in found} >= {"echo", "chatty", "boom", "slow"}
    one = found[0]["assistant_id"]
    assert client.get(f"/agents/assistants/{one}", headers=alice).json["assistant_id"] == one
    assert client.get(f"/agents/assistants/{one}/schemas", headers=alice).status_code == 200
    assert client.post("/agents/assistants", json={"graph_id": "echo"}, headers=alice).status_code == 403
    assert client.patch(f"/agents/assistants/{one}", json={"name": "x"}, headers=alice).status_code == 403
    assert client.delete(f"/agents/assistants/{one}", headers=alice).status_code == 403
    made = client.post("/agents/assistants", json={"graph_id": "echo", "name": "made by root"}, headers=root)
    assert made.status_code == 200, made.data
    assert client.delete(f"/agents/assistants/{made.json['assistant_id']}", headers=root).status_code in (200, 204)


def test_a_graph_limited_to_admins_is_hidden_from_users_everywhere(make_app, langgraph_url):
    app = make_app(**agent_sections(langgraph_url, graphs={"chatty": {"roles": ["admin"]}}))
    client = app.test_client()
    alice, root = bearer(app, "alice"), bearer(app, "root", "admin")
    assert "chatty" not in {a["graph_id"] for a in client.post("/agents/assistants/search", json={}, headers=alice).json}
    assert client.post("/agents/runs/wait", json={"assistant_id": "chatty", "input": HELLO},
                       headers=alice).status_code == 403
    models = {m["id"] for m in client.get("/v1/models", headers=alice).json["data"]}
    assert "agent:chatty" not in models and "agent:echo" in models
    refused = client.post("/v1/chat/completions", headers=alice,
                          json={"model": "agent:chatty", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 403
    assert "agent:chatty" in {m["id"] for m in client.get("/v1/models", headers=root).json["data"]}
    everyone = client.post("/agents/assistants/count", json={}, headers=root)
    users = client.post("/agents/assistants/count", json={}, headers=alice)
    assert everyone.status_code == users.status_code == 200
    searched = client.post("/agents/assistants/search", json={"limit": 1000}, headers=root).json
    assert everyone.json == len(searched) and users.json == everyone.json - sum(a["graph_id"] == "chatty" for a in searched)
