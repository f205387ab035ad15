"""Agents through the portal, against a real `langgraph dev` (offline, in its own venv): the
langgraph-sdk client, agents as models, a Platform deployment's key, the run meter, the local
command (who may see what, and runs: test_langgraph_access.py, test_langgraph_runs.py).

The graphs are in tests/langgraph_project: echo (no model), chatty (a fake chat model that
streams tokens and reports usage), boom (streams, then raises) and slow (silent for a while).
"""
from __future__ import annotations

import os
import socket
import subprocess
import time

import openai
import pytest
import requests

from conftest import ROOT, bearer, free_port, settled_rows
from fake_http import JSONHandler, serve
from helpers import PiecesBody
from langgraph_calls import CHATTY_ANSWER, HELLO, agent_sections

pytestmark = pytest.mark.integration


@pytest.fixture
def app(make_app, langgraph_url):
    return make_app(**agent_sections(langgraph_url))


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
    down = make_app(**agent_sections(f"http://127.0.0.1:{free_port()}"))
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


def test_a_last_event_without_its_blank_line_is_still_relayed_and_the_run_ends_cleanly():
    from agent_portal.plugins.langgraph.events import LangGraphEvents, RunStreamState
    from agent_portal.sse import relay

    body = PiecesBody(b'event: metadata\r\ndata: {"run_id": "r1"}\r\n\r\nevent: values\r\n',
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
    port = free_port()
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
