"""Agents through the portal, against a real `langgraph dev` (offline, in its own venv).

The graphs are in tests/langgraph_project: echo (no model), chatty (a fake chat model that
streams tokens and reports usage), boom (streams, then raises) and slow (silent for a while).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import openai
import pytest
import requests


from conftest import bearer, settled_rows
from fake_http import JSONHandler, serve
from tcp_proxy import CuttableProxy

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration
HELLO = {"messages": [{"role": "user", "content": "hello there"}]}
CHATTY_ANSWER = "The portal streams this answer token by token."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def langgraph_url(tmp_path_factory):
    """A real `langgraph dev` on an explicit free port (it moves to another port, silently, when
    the one asked for is taken: that is checked)."""
    binary = Path(os.environ.get("LANGGRAPH_BIN", ROOT / ".cache/langgraph-venv/bin/langgraph"))
    if not binary.exists():
        message = f"langgraph-cli is not installed at {binary} (scripts/setup.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    project = tmp_path_factory.mktemp("langgraph") / "project"
    shutil.copytree(ROOT / "tests/langgraph_project", project,
                    ignore=shutil.ignore_patterns(".langgraph_api", "__pycache__"))
    port = _free_port()
    log_path = project / "langgraph.log"
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"}
    process = subprocess.Popen([str(binary), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
                                "--no-reload"], cwd=project, env=env, stdout=open(log_path, "wb"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, "langgraph dev exited early:\n" + log_path.read_text()[-3000:]
        try:
            if requests.get(url + "/ok", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("langgraph dev was not up in 90 s:\n" + log_path.read_text()[-3000:])
    assert "already in use" not in log_path.read_text(), "langgraph dev moved to another port"
    yield url
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def agent_sections(url: str, **langgraph) -> dict:
    return {"langgraph": {"url": url, "heartbeat_seconds": 0.3, "refresh_seconds": 5, **langgraph},
            "chat": {"heartbeat_seconds": 0.3, "retries": 0, "between_chunks_timeout_seconds": 10},
            "ledger": {"flush_seconds": 0.05}, "observability": {"health_cache_seconds": 0}}


@pytest.fixture
def app(make_app, langgraph_url):
    return make_app(**agent_sections(langgraph_url))


def events_of(body: bytes) -> list[tuple[str, object]]:
    """Return (event, data) of an SSE body, heartbeats left out."""
    parsed = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if not lines:
            continue
        name = next((line[6:].strip().decode() for line in lines if line.startswith(b"event:")), "message")
        data = b"\n".join(line[5:].strip() for line in lines if line.startswith(b"data:"))
        parsed.append((name, json.loads(data) if data else None))
    return parsed


def new_thread(client, headers, **body) -> str:
    response = client.post("/agents/threads", json=body, headers=headers)
    assert response.status_code == 200, response.data
    return response.json["thread_id"]


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


# --- streaming ------------------------------------------------------------------------------------


def test_a_user_streams_a_run_on_their_thread_and_sees_it_in_their_usage(app):
    client = app.test_client()
    alice = bearer(app, "alice")
    thread = new_thread(client, alice)
    answer = client.post(f"/agents/threads/{thread}/runs/stream", headers=alice,
                         json={"assistant_id": "chatty", "input": HELLO, "stream_mode": ["messages-tuple", "values"]})
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    assert b"\r\n" not in answer.data
    events = events_of(answer.data)
    assert events[0][0] == "metadata"
    tokens = "".join(data[0]["content"] for name, data in events if name == "messages")
    assert tokens == CHATTY_ANSWER
    assert events[-1][0] == "values"
    row = settled_rows(app)[0]
    assert (row["actor_id"], row["backend"], row["model"], row["outcome"]) == ("alice", "langgraph", "agent:chatty", "ok")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (2, 8, "upstream")
    assert row["session_id"] == thread and row["ttft"] is not None and row["stream"]
    usage = client.get("/observability/usage?group_by=model", headers=alice).json
    assert "agent:chatty" in json.dumps(usage)


@pytest.mark.parametrize("mode", ["values", "updates", "messages", "messages-tuple", "events", "debug", "tasks",
                                  "checkpoints", "custom", ["custom", "tasks"], ["messages", "updates"],
                                  ["messages-tuple", "values"], ["debug", "events", "checkpoints"]])
def test_a_run_is_billed_from_what_the_graph_reported_whatever_its_stream_mode(app, mode):
    answer = app.test_client().post("/agents/runs/stream", headers=bearer(app, "alice"),
                                    json={"assistant_id": "chatty", "input": HELLO, "stream_mode": mode})
    assert answer.status_code == 200
    asked = {mode} if isinstance(mode, str) else set(mode)
    relayed = {name.split("|")[0] for name, _ in events_of(answer.data)} - {"metadata"}
    assert "values" not in relayed or "values" in asked  # the meter's own mode is never relayed
    row = settled_rows(app)[0]
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (2, 8, "upstream"), mode


def test_a_run_on_a_thread_with_history_bills_only_its_own_messages_in_any_mode(app):
    client, alice = app.test_client(), bearer(app, "alice")
    thread = new_thread(client, alice)
    for count, mode in enumerate(["values", "updates", "messages"], start=1):
        answer = client.post(f"/agents/threads/{thread}/runs/stream", headers=alice,
                             json={"assistant_id": "chatty", "input": HELLO, "stream_mode": mode})
        assert answer.status_code == 200 and events_of(answer.data)[0][0] == "metadata"
        row = settled_rows(app, count)[0]
        # the fake model reports a token a word of the whole history: 2 + 10 per earlier run
        assert (row["prompt_tokens"], row["completion_tokens"]) == (2 + 10 * (count - 1), 8), mode


@pytest.mark.parametrize("mode", ["nonsense", ["values", "bogus"], [], 7, {"values": True}])
def test_a_stream_mode_the_server_does_not_know_is_refused_with_400(app, mode):
    answer = app.test_client().post("/agents/runs/stream", headers=bearer(app, "alice"),
                                    json={"assistant_id": "chatty", "input": HELLO, "stream_mode": mode})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_run"
    assert "stream_mode" in answer.json["error"]["message"]


def test_a_graph_without_usage_is_metered_by_counting_what_was_relayed(app):
    client = app.test_client()
    answer = client.post("/agents/runs/stream", headers=bearer(app, "alice"),
                         json={"assistant_id": "echo", "input": HELLO, "stream_mode": "values"})
    assert events_of(answer.data)[-1][1]["messages"][-1]["content"] == "echo: hello there"
    row = settled_rows(app)[0]
    assert row["usage_source"] == "counted" and row["completion_tokens"] == 4 and row["prompt_tokens"] > 0


def test_a_silent_graph_gets_heartbeats_and_still_ends_cleanly(app, live_server):
    server = live_server(app)
    response = requests.post(f"{server.url}/agents/runs/stream", headers=bearer(app, "alice"), stream=True,
                             json={"assistant_id": "slow", "input": {"seconds": 1.5}}, timeout=30)
    body = b"".join(response.iter_content(None))
    assert b": keep-alive" in body
    assert events_of(body)[-1][1]["messages"][-1]["content"] == "slept"
    assert settled_rows(app)[0]["outcome"] == "ok"


def test_the_client_leaving_cancels_the_run_on_the_server(app, live_server, langgraph_url):
    server = live_server(app)
    alice = bearer(app, "alice")
    thread = new_thread(app.test_client(), alice)
    response = requests.post(f"{server.url}/agents/threads/{thread}/runs/stream", headers=alice, stream=True,
                             json={"assistant_id": "slow", "input": {"seconds": 20}}, timeout=30)
    first_event = next(line for line in response.iter_lines() if line.startswith(b"event:"))
    assert first_event == b"event: metadata"
    response.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        runs = requests.get(f"{langgraph_url}/threads/{thread}/runs", timeout=5).json()
        if runs and runs[0]["status"] != "running" and runs[0]["status"] != "pending":
            break
        time.sleep(0.2)
    assert runs[0]["status"] == "interrupted"
    row = settled_rows(app)[0]
    assert row["outcome"] == "client_disconnected" and row["status"] == 499


def test_a_graph_that_raises_ends_the_stream_with_an_error_event(app):
    client = app.test_client()
    answer = client.post("/agents/runs/stream", headers=bearer(app, "alice"),
                         json={"assistant_id": "boom", "input": HELLO, "stream_mode": "messages-tuple"})
    events = events_of(answer.data)
    assert [name for name, _ in events][-1] == "error"
    assert events[-1][1] == {"error": "ValueError", "message": "the boom graph failed on purpose"}
    row = settled_rows(app)[0]
    assert row["outcome"] == "upstream_error" and row["status"] == 502 and row["completion_tokens"] > 0


def test_wait_on_a_graph_that_raises_is_an_error_status_with_its_message(app):
    answer = app.test_client().post("/agents/runs/wait", headers=bearer(app, "alice"),
                                    json={"assistant_id": "boom", "input": HELLO})
    assert answer.status_code == 502
    assert answer.json["error"]["code"] == "agent_error"
    assert "the boom graph failed on purpose" in answer.json["error"]["message"]
    assert settled_rows(app)[0]["outcome"] == "upstream_error"


def test_the_server_going_away_mid_run_ends_the_stream_with_an_error_event(make_app, langgraph_url, live_server):
    port = int(langgraph_url.rsplit(":", 1)[1])
    proxy = CuttableProxy(("127.0.0.1", port))
    try:
        app = make_app(**agent_sections(f"http://127.0.0.1:{proxy.port}"))
        server = live_server(app)
        response = requests.post(f"{server.url}/agents/runs/stream", headers=bearer(app, "alice"), stream=True,
                                 json={"assistant_id": "slow", "input": {"seconds": 20}}, timeout=30)
        chunks = response.iter_content(None)
        first = b""
        while b"metadata" not in first:
            first += next(chunks)
        proxy.cut()
        rest = b"".join(chunks)
        assert events_of(first + rest)[-1][0] == "error"
        assert settled_rows(app)[0]["outcome"] in ("upstream_reset", "upstream_incomplete")
    finally:
        proxy.close()


def test_runs_are_limited_like_chat_calls(make_app, langgraph_url):
    app = make_app(**agent_sections(langgraph_url),
                   rate_limits={"roles": {"user": {"requests_per_minute": 1}}})
    client = app.test_client()
    alice = bearer(app, "alice")
    assert client.post("/agents/runs/wait", json={"assistant_id": "echo", "input": HELLO}, headers=alice).status_code == 200
    limited = client.post("/agents/runs/wait", json={"assistant_id": "echo", "input": HELLO}, headers=alice)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    outcomes = sorted(row["outcome"] for row in settled_rows(app, 2))
    assert outcomes == ["ok", "refused"]


def test_a_background_run_is_recorded_when_it_ends(app):
    client = app.test_client()
    alice = bearer(app, "alice")
    thread = new_thread(client, alice)
    created = client.post(f"/agents/threads/{thread}/runs", json={"assistant_id": "chatty", "input": HELLO},
                          headers=alice)
    assert created.status_code == 200 and created.json["status"] in ("pending", "running")
    joined = client.get(f"/agents/threads/{thread}/runs/{created.json['run_id']}/join", headers=alice)
    assert joined.json["messages"][-1]["content"] == CHATTY_ANSWER
    row = settled_rows(app, timeout=15)[0]
    assert row["upstream_call_id"] == created.json["run_id"]
    assert (row["outcome"], row["completion_tokens"], row["usage_source"]) == ("ok", 8, "upstream")


# --- the langgraph-sdk client and agents as models -------------------------------------------------


def test_the_langgraph_sdk_works_pointed_at_the_portal(app, live_server):
    from langgraph_sdk import get_sync_client

    server = live_server(app)
    client = get_sync_client(url=f"{server.url}/agents", headers=bearer(app, "alice"))
    assert "echo" in {a["graph_id"] for a in client.assistants.search()}
    thread = client.threads.create()
    parts = [part for part in client.runs.stream(thread["thread_id"], "chatty", input=HELLO,
                                                 stream_mode="messages-tuple")]
    assert parts[0].event == "metadata"
    assert "".join(p.data[0]["content"] for p in parts if p.event == "messages") == CHATTY_ANSWER
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"]["messages"][-1]["content"] == CHATTY_ANSWER
    other = get_sync_client(url=f"{server.url}/agents", headers=bearer(app, "bob"))
    assert thread["thread_id"] not in [t["thread_id"] for t in other.threads.search()]


def test_agents_are_models_the_openai_client_streams_from(app, live_server):
    server = live_server(app)
    alice = bearer(app, "alice")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=alice["Authorization"].split()[1])
    models = {m.id for m in client.models.list()}
    assert {"agent:echo", "agent:chatty", "agent:boom"} <= models
    stream = client.chat.completions.create(model="agent:chatty", stream=True,
                                            messages=[{"role": "user", "content": "hello there"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == CHATTY_ANSWER
    plain = client.chat.completions.create(model="agent:echo", messages=[{"role": "user", "content": "hi"}])
    assert plain.choices[0].message.content == "echo: hi"
    rows = settled_rows(app, 2)
    chatty = next(r for r in rows if r["model"] == "agent:chatty")
    assert (chatty["backend"], chatty["usage_source"], chatty["completion_tokens"]) == ("langgraph", "upstream", 8)
    with pytest.raises(openai.APIError):
        for _chunk in client.chat.completions.create(model="agent:boom", stream=True,
                                                      messages=[{"role": "user", "content": "hi"}]):
            pass


def test_agents_stay_models_when_upstream_names_are_not_exposed(make_app, langgraph_url):
    sections = agent_sections(langgraph_url)
    sections["chat"]["expose_upstream_models"] = False
    app = make_app(**sections)
    client = app.test_client()
    alice = bearer(app, "alice")
    assert "agent:echo" in {m["id"] for m in client.get("/v1/models", headers=alice).json["data"]}
    answer = client.post("/v1/chat/completions", headers=alice,
                         json={"model": "agent:echo", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200


def test_health_shows_the_server_and_its_version_and_the_model_list_shows_agents(app, make_app):
    root = bearer(app, "root", "admin")
    client = app.test_client()
    health = client.get("/observability/health", headers=root).json["components"]["langgraph"]
    assert health["status"] == "up" and health["version"].startswith("0.")
    backends = {b["backend"]: b for b in client.get("/observability/models", headers=root).json["backends"]}
    assert "agent:chatty" in backends["langgraph"]["models"] and backends["langgraph"]["reachable"]
    down = make_app(**agent_sections(f"http://127.0.0.1:{_free_port()}"))
    component = down.test_client().get("/observability/health", headers=bearer(down, "root", "admin")).json
    assert component["components"]["langgraph"]["status"] == "down"
    chat = down.test_client().post("/v1/chat/completions", headers=bearer(down, "alice"),
                                   json={"model": "agent:echo", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 404  # no graph is known while the server is down


# --- what the real dev server cannot show: a Platform deployment's key, a flood of names ----------


class PlatformStandIn(JSONHandler):
    """A LangGraph Platform deployment as CONTRACTS.md describes it: x-api-key or 401 {"detail"}."""

    searches = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("x-api-key") != "right-key-5a1e8c3d9f":
            return self.reply(401, {"detail": "Invalid API key"})
        if self.path == "/assistants/search":
            type(self).searches += 1
            return self.reply(200, [{"assistant_id": "6f1d2c9e-8a4b-4c3d-9e2f-1a2b3c4d5e6f", "graph_id": "echo"}])
        return self.reply(404, {"detail": "Not found"})


@pytest.fixture
def platform():
    server, url = serve(PlatformStandIn)
    PlatformStandIn.searches = 0
    yield url
    server.shutdown()


def test_a_key_the_server_refuses_is_the_portals_fault_never_the_callers(make_app, platform):
    app = make_app(**agent_sections(platform, api_key="wrong-key-2c7f4a9e1b"))
    answer = app.test_client().post("/agents/threads/search", json={}, headers=bearer(app, "alice"))
    assert answer.status_code == 502 and answer.json["error"]["code"] == "upstream_auth_failed"
    good = make_app(**agent_sections(platform, api_key="right-key-5a1e8c3d9f"))
    assert good.test_client().post("/agents/assistants/search", json={},
                                   headers=bearer(good, "alice")).json[0]["graph_id"] == "echo"


def test_made_up_agent_names_do_not_make_the_portal_ask_the_server_each_time(make_app, platform):
    app = make_app(**agent_sections(platform, api_key="right-key-5a1e8c3d9f"))
    client, alice = app.test_client(), bearer(app, "alice")
    for i in range(30):
        answer = client.post("/v1/chat/completions", headers=alice,
                             json={"model": f"agent:made-up-{i}", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 404
    assert PlatformStandIn.searches <= 2


class _Body:
    """A response body that hands out the given pieces, then ends."""

    def __init__(self, *pieces: bytes):
        self.pieces = list(pieces)
        self.released = self.closed = False
        self.connection = None

    def read1(self, _size=65536):
        return self.pieces.pop(0) if self.pieces else b""

    def release_conn(self):
        self.released = True

    def close(self):
        self.closed = True


def test_a_last_event_without_its_blank_line_is_still_relayed_and_the_run_ends_cleanly():
    from agent_portal.plugins.langgraph.events import LangGraphEvents, RunStreamState
    from agent_portal.sse import relay

    body = _Body(b'event: metadata\r\ndata: {"run_id": "r1"}\r\n\r\nevent: values\r\n',
                 b'data: {"messages": []}\r\n')
    ended = []
    out = b"".join(relay(body, b"", RunStreamState(), 5, 5, ended.append, events=LangGraphEvents))
    assert out == b'event: metadata\ndata: {"run_id": "r1"}\n\nevent: values\ndata: {"messages": []}\n\n'
    assert ended[0].outcome == "ok" and ended[0].done and body.released


def test_a_run_that_streams_two_messages_answers_them_apart():
    from agent_portal.plugins.langgraph.events import RunMeter

    meter = RunMeter()
    said = [meter.observe("messages", [{"type": "AIMessageChunk", "id": message, "content": text}, {}])
            for message, text in (("run-a", "Looking it up."), ("run-a", " Done."), ("run-b", "The answer"),
                                  ("run-b", " is 42."))]
    assert said == ["Looking it up.", " Done.", "\n\nThe answer", " is 42."]
    assert meter.answer_text() == "Looking it up. Done.\n\nThe answer is 42."


def test_a_run_that_sends_no_message_is_counted_from_everything_it_relayed():
    from agent_portal.plugins.langgraph.events import RELAYED_CHARS, RunMeter

    meter = RunMeter()
    meter.observe("metadata", {"run_id": "r1"})
    meter.observe("custom", {"progress": "reading the first report"})
    meter.observe("custom|sub:1", "a note from a subgraph")
    assert meter.usage() is None
    assert meter.answer_text() == '{"progress": "reading the first report"}a note from a subgraph'
    big = RunMeter()
    for _ in range(3):
        big.observe("custom", "x" * RELAYED_CHARS)
    assert len(big.relayed) == 1 and len(big.relayed_text()) == 3 * RELAYED_CHARS  # kept once, counted whole


def test_the_local_langgraph_command_refuses_a_taken_port_and_serves_a_free_one():
    if os.environ.get("CI") != "true" and not (ROOT / ".cache/langgraph-venv/bin/langgraph").exists():
        pytest.skip("langgraph-cli is not installed (scripts/setup.sh installs it)")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        refused = subprocess.run(["bash", str(ROOT / "scripts/langgraph.sh"), str(taken)], capture_output=True,
                                 text=True, timeout=30)
    assert refused.returncode == 1 and f"127.0.0.1:{taken} is taken" in refused.stderr
    port = _free_port()
    process = subprocess.Popen(["bash", str(ROOT / "scripts/langgraph.sh"), str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, "scripts/langgraph.sh exited early"
            try:
                if requests.get(f"http://127.0.0.1:{port}/ok", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            pytest.fail("scripts/langgraph.sh served nothing in 90 s")
        graphs = requests.post(f"http://127.0.0.1:{port}/assistants/search", json={}, timeout=5).json()
        assert {"echo", "chatty"} <= {g["graph_id"] for g in graphs}
    finally:
        os.killpg(process.pid, 15)
        process.wait(15)
