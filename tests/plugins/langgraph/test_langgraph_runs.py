"""Agents through the portal, against a real `langgraph dev`: runs streamed, metered, cut and limited."""
from __future__ import annotations

import json
import time

import pytest
import requests

from conftest import bearer, settled_rows
from langgraph_calls import CHATTY_ANSWER, HELLO, agent_sections, events_of, new_thread
from tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def app(make_app, langgraph_url):
    return make_app(**agent_sections(langgraph_url))


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
