"""Tools through the portal as it runs in production: gunicorn's gevent workers, a stdio child
per worker, and a shutdown that ends an open tool call with an error and a ledger row."""
from __future__ import annotations

import json
import signal
import threading
import time

import pytest
import requests
import sqlalchemy as sa
import yaml

from agent_portal import create_app, portal_of
from agent_portal.plugins.portal_tokens import mint_token

from helpers import start_portal
from mcp_calls import ACCEPT_BOTH, mcp_sections, start_tool_server

pytestmark = pytest.mark.integration


def test_gevent_workers_serve_tools_and_a_shutdown_ends_an_open_call_with_a_row(tmp_path):
    from test_mcp import official_client_session

    tool_server, url = start_tool_server()
    db = tmp_path / "served.db"
    sections = mcp_sections(url)
    sections["ledger"] = {"flush_seconds": 0.05}
    config = {"portal": {"secret_key": "mcp-served-7Qx2Lw9Rk4Tz8Vb3Nm6Pj1Hs5Dg0Fc", "log_level": "WARNING",
                         "database_url": f"sqlite:///{db}"},
              "plugins": {**sections, "portal_tokens": {}}}
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    process, base = start_portal(path, {"PORTAL_GRACEFUL_SECONDS": "2"}, workers=2)
    try:
        headers = {"Authorization": f"Bearer {mint_token(portal_of(create_app(str(path))), 'gina', 'user')}"}

        async def work(client):
            names = {t.name for t in (await client.list_tools()).tools}
            sums = [(await client.call_tool(f"{server}__add", {"a": i, "b": 1})).content[0].text
                    for server in ("tools", "local") for i in range(3)]
            return names, sums

        names, sums = official_client_session(base + "/mcp", headers, work)
        assert {"tools__slow", "local__slow"} <= names and sums == ["1", "2", "3"] * 2

        session = requests.post(base + "/mcp", headers={**headers, "Accept": ACCEPT_BOTH}, timeout=5, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        call_headers = {**headers, "Accept": ACCEPT_BOTH, "Mcp-Session-Id": session.headers["Mcp-Session-Id"]}
        endings = []

        def slow_call(server):
            with requests.post(base + "/mcp", headers=call_headers, stream=True, timeout=30, json={
                    "jsonrpc": "2.0", "id": 5, "method": "tools/call",
                    "params": {"name": f"{server}__slow", "arguments": {"seconds": 20}}}) as answer:
                data = [line for line in answer.iter_lines() if line.startswith(b"data:")]
            endings.append(json.loads(data[-1][5:]))

        calls = [threading.Thread(target=slow_call, args=(server,)) for server in ("tools", "local")]
        for thread in calls:
            thread.start()
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        for thread in calls:
            thread.join(20)
        process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
        tool_server.kill()
    assert len(endings) == 2 and all(e["error"]["data"]["code"] == "portal_shutdown" for e in endings)
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT model, outcome, status FROM portal_chat_calls")).all()
    engine.dispose()
    assert sorted((m, o) for m, o, _s in rows if o != "ok") == [("tool:local/slow", "portal_shutdown"),
                                                                ("tool:tools/slow", "portal_shutdown")]
    assert sum(1 for _m, o, _s in rows if o == "ok") == 6
