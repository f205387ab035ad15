"""Tools behind the portal: real MCP servers (the official SDK, over streamable HTTP and stdio),
reached through /mcp by the official client and by raw JSON-RPC, allowed by role, switched,
limited, metered, and failing with a reason."""
from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from conftest import bearer, settled_rows
from mcp_calls import ACCEPT_BOTH, RPC, UPSTREAM_SECRET, RawServer, mcp_sections, start_tool_server


@pytest.fixture(scope="module")
def tool_url():
    process, url = start_tool_server()
    yield url
    process.kill()
    process.wait()


@pytest.fixture
def app(make_app, tool_url):
    return make_app(**mcp_sections(tool_url))


def official_client_session(url: str, headers: dict, work):
    """Run ``work(client)`` with the official mcp SDK client connected to ``url``."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def main():
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10, read=30)) as http:
            async with Client(streamable_http_client(url, http_client=http), read_timeout_seconds=10) as client:
                return await work(client)

    return asyncio.run(main())


def test_the_official_client_lists_and_calls_tools_through_the_portal(app, live_server):
    server = live_server(app)

    async def work(client):
        listed = await client.list_tools()
        added = await client.call_tool("tools__add", {"a": 2, "b": 40})
        echoed = await client.call_tool("local__echo", {"text": "through stdio"})
        return {t.name for t in listed.tools}, added, echoed

    names, added, echoed = official_client_session(server.url + "/mcp", bearer(app, "alice"), work)
    assert {"tools__add", "tools__echo", "local__echo", "local__add"} <= names
    assert "tools__wipe_disk" not in names  # admins only
    assert not added.is_error and added.content[0].text == "42"
    assert echoed.content[0].text == "through stdio"

    async def one_server(client):
        return {t.name for t in (await client.list_tools()).tools}, await client.call_tool("add", {"a": 1, "b": 1})

    names, added = official_client_session(server.url + "/mcp/tools", bearer(app, "alice"), one_server)
    assert "add" in names and "wipe_disk" not in names and added.content[0].text == "2"


def test_a_user_sees_only_the_tools_their_role_allows_and_is_refused_the_others(app):
    alice, root = RPC(app).initialize(), RPC(app, "root", "admin").initialize()
    assert "tools__wipe_disk" not in alice.tool_names() and "tools__wipe_disk" in root.tool_names()
    refused = alice.tool("tools__wipe_disk")
    assert refused["error"]["code"] == -32011 and refused["error"]["data"]["code"] == "tool_forbidden"
    assert "result" not in refused
    assert root.tool("tools__wipe_disk")["result"]["content"][0]["text"] == "wiped"


def test_a_server_the_role_may_not_use_is_not_there(make_app, tool_url):
    app = make_app(**mcp_sections(tool_url, servers={"ops": {"url": tool_url, "roles": ["admin"]}}))
    alice = RPC(app).initialize()
    assert not any(name.startswith("ops__") for name in alice.tool_names())
    assert alice.tool("ops__add", a=1, b=2)["error"]["code"] == -32011
    assert RPC(app, path="/mcp/ops").post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 404


def test_each_tool_call_is_a_ledger_row_with_its_price(app):
    alice = RPC(app).initialize()
    assert alice.tool("tools__add", a=1, b=2)["result"]["content"][0]["text"] == "3"
    assert alice.tool("tools__echo", text="hi")["result"]["content"][0]["text"] == "hi"
    rows = {row["model"]: row for row in settled_rows(app, 2)}
    add, echo = rows["tool:tools/add"], rows["tool:tools/echo"]
    assert add["backend"] == "mcp" and add["actor_id"] == "alice" and add["outcome"] == "ok"
    assert add["cost"] == pytest.approx(0.01) and echo["cost"] == 0
    usage = app.test_client().get("/observability/usage?group_by=model", headers=bearer(app, "root", "admin")).json
    by_model = {row["model"]: row for row in usage["data"]}
    assert by_model["tool:tools/add"]["cost"] == pytest.approx(0.01) and "tool:tools/echo" in by_model


def test_a_tool_that_fails_is_recorded_as_a_tool_error_and_passed_on_as_data(app):
    answer = RPC(app).initialize().tool("tools__broken")
    assert answer["result"]["isError"] is True and "broken" in answer["result"]["content"][0]["text"]
    row = next(r for r in settled_rows(app) if r["model"] == "tool:tools/broken")
    assert row["outcome"] == "tool_error"


def test_a_limit_refuses_the_tool_call_past_it_and_records_the_refusal(make_app, tool_url):
    app = make_app(**mcp_sections(tool_url, rate_limits={"users": {"alice": {"requests_per_minute": 2}}}))
    alice = RPC(app).initialize()
    assert "result" in alice.tool("tools__echo", text="1") and "result" in alice.tool("tools__echo", text="2")
    refused = alice.tool("tools__echo", text="3")
    assert refused["error"]["code"] == -32012 and refused["error"]["data"]["code"] == "requests_per_minute"
    assert [r["outcome"] for r in settled_rows(app, 3) if r["model"] == "tool:tools/echo"].count("refused") == 1


def test_a_budget_counts_the_price_per_call(make_app, tool_url):
    app = make_app(**mcp_sections(tool_url, rate_limits={"users": {"alice": {"daily_budget_usd": 0.025}}}))
    alice = RPC(app).initialize()
    answers = [alice.tool("tools__add", a=1, b=1) for _ in range(4)]
    assert ["result" in a for a in answers] == [True, True, False, False]
    assert answers[2]["error"]["data"]["code"] == "daily_budget_usd"


def test_a_stdio_server_started_by_the_portal_answers(app):
    local = RPC(app, path="/mcp/local").initialize()
    assert {"echo", "add"} <= local.tool_names()
    assert local.tool("add", a=20, b=22)["result"]["structuredContent"] == {"result": 42}


def test_a_server_that_hangs_gives_an_error_within_its_timeout(make_app, tool_url):
    hang = RawServer("hang")
    try:
        app = make_app(**mcp_sections(tool_url, servers={"stuck": {"url": hang.url, "timeout_seconds": 1}}))
        started = time.monotonic()
        answer = RPC(app, path="/mcp/stuck").initialize().call("tools/list")
        assert time.monotonic() - started < 3
        assert answer["error"]["code"] == -32001 and answer["error"]["data"]["code"] == "upstream_timeout"
        # callers queued behind the hanging handshake get its error at once, not a timeout each
        import threading
        waits = []

        def list_stuck():
            begun = time.monotonic()
            stuck = RPC(app, path="/mcp/stuck").initialize().call("tools/list")
            waits.append((time.monotonic() - begun, stuck["error"]["data"]["code"]))

        callers = [threading.Thread(target=list_stuck) for _ in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(10)
        assert len(waits) == 4 and all(code == "upstream_timeout" and took < 2.5 for took, code in waits), waits
        # /mcp leaves it out and still lists the others
        started = time.monotonic()
        assert "tools__add" in RPC(app).initialize().tool_names()
        assert time.monotonic() - started < 3
    finally:
        hang.stop()


def test_a_slow_tool_is_cut_at_the_servers_timeout_and_recorded(app):
    started = time.monotonic()
    answer = RPC(app).initialize().tool("tools__slow", seconds=10)
    assert time.monotonic() - started < 5 and answer["error"]["data"]["code"] == "upstream_timeout"
    row = next(r for r in settled_rows(app) if r["model"] == "tool:tools/slow")
    assert row["outcome"] == "upstream_timeout" and row["status"] == 504 and row["cost"] == 0


def test_a_server_answering_garbage_or_absent_gives_a_reason(make_app, tool_url):
    garbage = RawServer("garbage")
    try:
        app = make_app(**mcp_sections(tool_url, servers={"junk": {"url": garbage.url},
                                                          "gone": {"url": f"http://127.0.0.1:{_closed_port()}/mcp"}}))
        junk = RPC(app, path="/mcp/junk").initialize().call("tools/list")["error"]
        assert junk["code"] == -32010 and "HTTP 200 (text/html)" in junk["message"]
        gone = RPC(app, path="/mcp/gone").initialize().call("tools/list")["error"]
        assert gone["data"]["code"] == "upstream_unreachable"
    finally:
        garbage.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_result_past_the_bound_is_refused_not_relayed(make_app, tool_url):
    app = make_app(**mcp_sections(tool_url, mcp={"max_result_bytes": 4096}))
    answer = RPC(app).initialize().tool("tools__big", chars=50_000)
    assert answer["error"]["data"]["code"] == "result_too_large"
    assert RPC(app).initialize().tool("tools__big", chars=100)["result"]["content"][0]["text"] == "x" * 100


def test_an_admin_switches_a_tool_off_and_on_without_a_restart(app):
    root, alice = bearer(app, "root", "admin"), RPC(app).initialize()
    client = app.test_client()
    assert client.put("/admin/mcp/servers/tools/tools/echo", json={"enabled": False}, headers=bearer(app)).status_code == 403
    assert client.put("/admin/mcp/servers/tools/tools/echo", json={"enabled": False}, headers=root).status_code == 200
    assert "tools__echo" not in alice.tool_names()
    assert alice.tool("tools__echo", text="x")["error"]["code"] == -32011
    listed = client.get("/admin/mcp/tools", headers=root).json
    echo = next(t for s in listed["servers"] if s["name"] == "tools" for t in s["tools"] if t["name"] == "echo")
    assert echo["enabled"] is False and echo["switched_by"] == "root"
    assert UPSTREAM_SECRET not in json.dumps(listed)  # upstream credentials stay in config
    assert client.delete("/admin/mcp/servers/tools/tools/echo", headers=root).status_code == 200
    assert alice.tool("tools__echo", text="back")["result"]["content"][0]["text"] == "back"
    assert client.put("/admin/mcp/servers/nope/tools/echo", json={"enabled": False}, headers=root).status_code == 404
    assert client.put("/admin/mcp/servers/tools/tools/echo", json={"enabled": "no"}, headers=root).status_code == 400


def test_sessions_are_the_callers_own_and_end_with_delete(app):
    alice, bob = RPC(app).initialize(), RPC(app, "bob")
    assert bob.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 400  # no session
    stolen = bob.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, **{"Mcp-Session-Id": alice.session})
    assert stolen.status_code == 404
    assert alice.call("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}
    wrong_version = alice.post({"jsonrpc": "2.0", "id": 2, "method": "ping"}, **{"MCP-Protocol-Version": "1999-01-01"})
    assert wrong_version.status_code == 400
    assert alice.client.delete("/mcp", headers=alice.headers).status_code == 204
    assert alice.post({"jsonrpc": "2.0", "id": 3, "method": "ping"}).status_code == 404
    assert alice.client.get("/mcp", headers=alice.headers).status_code == 405  # nothing is sent unasked


def test_hostile_messages_get_json_rpc_errors(app):
    alice = RPC(app).initialize()
    bad_json = alice.client.post("/mcp", data=b"{nope", headers={**alice.headers, "Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json["error"]["code"] == -32700
    batch = alice.post([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert batch.status_code == 400 and batch.json["error"]["code"] == -32600
    assert alice.post({"jsonrpc": "1.0", "id": 1, "method": "ping"}).json["error"]["code"] == -32600
    assert alice.call("resources/list")["error"]["code"] == -32601
    assert alice.call("tools/call", {"name": "add"})["error"]["code"] == -32602  # not <server>__<tool>
    assert alice.call("tools/call", {"name": "tools__add", "arguments": [1]})["error"]["code"] == -32602
    assert alice.post({"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
    unauthenticated = app.test_client().post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert unauthenticated.status_code == 401
    huge = alice.post({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                       "params": {"name": "tools__echo", "arguments": {"text": "x" * 2_000_000}}})
    assert huge.status_code == 413  # past plugins.mcp.max_request_bytes, before any upstream sees it


def test_a_streamed_call_relays_the_answer_as_sse_and_a_client_that_leaves_cancels_it(app, live_server):
    server = live_server(app)
    alice = RPC(app).initialize()
    import requests

    headers = {**alice.headers, "Accept": ACCEPT_BOTH}
    answer = requests.post(server.url + "/mcp", headers=headers, timeout=10,
                           json={"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                 "params": {"name": "tools__add", "arguments": {"a": 1, "b": 1}}})
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    data = [json.loads(line[5:]) for line in answer.text.splitlines() if line.startswith("data:")]
    assert data[-1]["id"] == 7 and data[-1]["result"]["content"][0]["text"] == "2"

    with requests.post(server.url + "/mcp", headers=headers, stream=True, timeout=10,
                       json={"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                             "params": {"name": "tools__slow", "arguments": {"seconds": 2.5}}}) as leaving:
        assert next(leaving.iter_content(64))  # a heartbeat: the call is under way
    deadline = time.monotonic() + 5
    rows = []
    while time.monotonic() < deadline and not rows:
        rows = [r for r in settled_rows(app, 2, timeout=0.5) if r["model"] == "tool:tools/slow"]
    assert rows and rows[0]["outcome"] == "client_disconnected" and rows[0]["status"] == 499


def test_open_webui_session_tokens_and_api_keys_reach_tools_as_their_user(make_app, tool_url, webui):
    from conftest import WEBUI_SECRET

    app = make_app(**mcp_sections(tool_url, openwebui_session={"url": webui.url, "secret": WEBUI_SECRET},
                                  api_keys={}))
    session = RPC(app)  # Open WebUI's tool server connection with auth_type "session"
    session.headers["Authorization"] = f"Bearer {webui.login('alice')}"
    assert session.initialize().tool("tools__echo", text="from a chat")["result"]["content"][0]["text"] == "from a chat"
    key = app.test_client().post("/admin/keys", headers=bearer(app, "root", "admin"),
                                 json={"owner": "ci-bot", "name": "tools"}).json["key"]
    keyed = RPC(app)
    keyed.headers["Authorization"] = f"Bearer {key}"
    assert "tools__add" in keyed.initialize().tool_names() and "result" in keyed.tool("tools__add", a=1, b=1)
    forged = RPC(app)
    forged.headers["Authorization"] = "Bearer ap-not-a-real-key-0000000000000000"
    assert forged.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}).status_code == 401
    rows = settled_rows(app, 2)
    assert {(r["actor_id"], r["model"]) for r in rows} >= {("alice", "tool:tools/echo"), ("ci-bot", "tool:tools/add")}
    assert next(r for r in rows if r["actor_id"] == "ci-bot")["key_id"]
