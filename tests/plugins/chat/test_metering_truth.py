"""What a plain user cannot bend: one record per call, cut streams billed, access that follows the
upstream model whatever its name, and only chat parameters upstream."""
from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from ws_client import WebSocketClient

from agent_portal import portal_of
from agent_portal.database import create_engine_for
from agent_portal.counting import TokenCounter

from conftest import bearer, chat_plugins, settled_rows as ledger_rows

HELLO = [{"role": "user", "content": "hello there"}]
MODELS = {
    "priced": {"backend": "fake", "model": "long", "input_cost_per_token": 0.001,
               "output_cost_per_token": 0.002},
    "priced-reset": {"backend": "fake", "model": "reset-mid", "input_cost_per_token": 0.001,
                     "output_cost_per_token": 0.002},
    "premium": {"backend": "fake", "model": "premium", "roles": ["admin"],
                "input_cost_per_token": 0.5, "output_cost_per_token": 0.5},
}


@pytest.fixture
def app(make_app, fake_upstream):
    return make_app(**chat_plugins(fake_upstream, models=MODELS))


def chat(app, body, headers=None):
    return app.test_client().post("/v1/chat/completions", json=body, headers=headers or bearer(app))


# --- 1. a record per call ------------------------------------------------------------------------


def test_calls_repeating_one_request_id_each_leave_their_own_record(app):
    for user in ["alice"] * 10 + ["bob"]:
        response = chat(app, {"model": "echo", "messages": HELLO},
                        {**bearer(app, user), "X-Request-ID": "same-id"})
        assert response.status_code == 200 and response.headers["X-Request-ID"] == "same-id"
    rows = ledger_rows(app, 11)
    assert len(rows) == 11
    assert {r["request_id"] for r in rows} == {"same-id"}
    assert len({r["call_id"] for r in rows}) == 11
    assert sorted(r["actor_id"] for r in rows).count("bob") == 1


def test_each_chat_on_one_websocket_leaves_its_own_record(app, live_server):
    server = live_server(app)
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/chat", headers=bearer(app))
    call_ids = []
    for _ in range(3):
        ws.send(json.dumps({"model": "echo", "messages": HELLO, "max_tokens": 2}))
        while True:
            message = json.loads(ws.receive(timeout=5))
            if message["type"] == "done":
                call_ids.append(message["call_id"])
                break
    ws.close()
    rows = ledger_rows(app, 3)
    assert len(rows) == 3 and {r["call_id"] for r in rows} == set(call_ids)


def test_a_record_written_twice_after_an_unknown_commit_is_stored_once(app):
    from agent_portal import ChatRecord
    from agent_portal.plugins.ledger.schema import to_row

    writer = portal_of(app).extensions["ledger"].writer
    row = to_row(ChatRecord(request_id="r", actor_id="alice", actor_role="user", model="echo"))
    writer.add(row)
    writer.flush_once()
    writer.add(dict(row))  # the same call again, as a retry after a lost commit would send it
    writer.flush_once()
    assert len(portal_of(app).extensions["ledger"].recent()) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_ledger_unique_by_request_id_is_migrated_without_losing_rows(request, tmp_path, backend):
    url = f"sqlite:///{tmp_path}/old.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = create_engine_for(url)
    with engine.begin() as conn:
        key = "INTEGER PRIMARY KEY" if backend == "sqlite" else "SERIAL PRIMARY KEY"
        conn.execute(sa.text(f"CREATE TABLE portal_chat_calls (id {key}, request_id VARCHAR(128)"
                             " UNIQUE, started_at TIMESTAMP, actor_id VARCHAR(200), actor_role VARCHAR(16),"
                             " model VARCHAR(200), outcome VARCHAR(40))"))
        conn.execute(sa.text("INSERT INTO portal_chat_calls (request_id, started_at, actor_id, actor_role,"
                             " model, outcome) VALUES ('old-1', '2026-11-01 10:00:00', 'alice', 'user',"
                             " 'echo', 'ok')"))
    from agent_portal.plugins.ledger.schema import migrate
    from agent_portal.plugins.ledger.schema import calls, insert_statement

    migrate(engine)
    migrate(engine)  # twice: a second boot changes nothing
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT call_id FROM portal_chat_calls")).scalar() == "old-1"
        for call_id in ("new-1", "new-2", "new-2"):
            conn.execute(insert_statement(engine), [{
                "call_id": call_id, "request_id": "old-1", "started_at": datetime.now(timezone.utc), "actor_id": "bob",
                "actor_role": "user", "model": "echo", "backend": "", "upstream_model": "", "stream": False,
                "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "usage_source": "upstream",
                "duration": 0.0, "outcome": "ok", "status": 200, "partial": False}])
        rows = conn.execute(sa.select(calls.c.call_id, calls.c.request_id)).all()
    engine.dispose()
    assert sorted(rows) == [("new-1", "old-1"), ("new-2", "old-1"), ("old-1", "old-1")]


# --- 2. cut streams are billed -------------------------------------------------------------------


def test_a_stream_the_client_cuts_is_billed_for_what_was_relayed(app, live_server):
    server = live_server(app)
    body = json.dumps({"model": "priced", "messages": HELLO, "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: {bearer(app)['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                 + body)
    received = b""
    while received.count(b"data: ") < 10:
        received += sock.recv(4096)
    sock.close()
    record = ledger_rows(app, 1)[0]
    assert record["outcome"] == "client_disconnected" and record["usage_source"] == "counted"
    counter = TokenCounter()
    seen = "".join(f"tok{i} " for i in range(received.decode(errors="replace").count('"tok')))
    everything = "".join(f"tok{i} " for i in range(100))
    # at least what the client got, at most the whole answer it never got
    assert counter.count_text("long", seen) <= record["completion_tokens"] < counter.count_text("long", everything)
    assert record["prompt_tokens"] == counter.count_prompt("long", HELLO, "hello there") > 0
    expected = record["prompt_tokens"] * 0.001 + record["completion_tokens"] * 0.002
    assert record["cost"] == pytest.approx(expected) and record["cost"] > 0


def test_a_stream_the_upstream_cuts_is_billed_for_what_was_relayed(app):
    response = chat(app, {"model": "priced-reset", "messages": HELLO, "stream": True})
    assert b"upstream_reset" in response.data
    record = ledger_rows(app, 1)[0]
    assert record["usage_source"] == "counted" and record["partial"]
    assert record["completion_tokens"] == TokenCounter().count_text("reset-mid", "tok0 tok1 ") > 0
    assert record["cost"] > 0


def test_a_complete_stream_keeps_the_upstreams_own_usage(app):
    chat(app, {"model": "echo", "messages": HELLO, "stream": True, "max_tokens": 3}).get_data()
    record = ledger_rows(app, 1)[0]
    assert (record["usage_source"], record["completion_tokens"], record["prompt_tokens"]) == ("upstream", 3, 7)


def test_counted_tokens_come_from_a_real_tokenizer_with_a_fallback_for_unknown_models():
    counter = TokenCounter()
    assert counter.count_text("gpt-4o", "hello world") == 2
    assert counter.count_text("llama-3-local", "hello world") == 2  # cl100k_base for unknown models
    assert counter.count_text("gpt-4o", "") == 0


# --- 3. access and prices follow the upstream model -------------------------------------------------


def test_a_user_cannot_reach_an_admin_only_model_by_its_upstream_name(app):
    assert chat(app, {"model": "premium", "messages": HELLO}).status_code == 403
    ids = {m["id"] for m in app.test_client().get("/v1/models", headers=bearer(app)).json["data"]}
    assert "premium" not in ids and "echo" in ids
    admin = bearer(app, "root", "admin")
    assert chat(app, {"model": "premium", "messages": HELLO}, admin).status_code == 200
    admin_ids = {m["id"] for m in app.test_client().get("/v1/models", headers=admin).json["data"]}
    assert "premium" in admin_ids


def test_the_upstream_name_of_a_priced_alias_costs_what_the_alias_costs(app):
    assert chat(app, {"model": "long", "messages": HELLO, "max_tokens": 2}).status_code == 200
    record = ledger_rows(app, 1)[0]
    # the fake reports 7 prompt and 100 completion tokens for "long"
    assert record["cost"] == pytest.approx(7 * 0.001 + 100 * 0.002)


def test_a_model_limit_set_on_an_alias_counts_calls_by_the_upstream_name(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, models={"nice": {"backend": "fake", "model": "pricey"}}),
                   rate_limits={"models": {"nice": {"requests_per_minute": 2}}})
    codes = [chat(app, {"model": name, "messages": HELLO}).status_code for name in ("nice", "pricey", "pricey")]
    assert codes == [200, 200, 429]


def test_only_mapped_models_are_served_when_upstream_names_are_not_exposed(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, models=MODELS, expose_upstream_models=False))
    assert chat(app, {"model": "echo", "messages": HELLO}).status_code == 404
    assert chat(app, {"model": "priced", "messages": HELLO, "max_tokens": 1}).status_code == 200
    ids = {m["id"] for m in app.test_client().get("/v1/models", headers=bearer(app)).json["data"]}
    assert ids == {"priced", "priced-reset"}


def test_a_chat_refused_for_its_model_leaves_one_refused_row(app):
    assert chat(app, {"model": "premium", "messages": HELLO}).status_code == 403
    assert chat(app, {"model": "gpt-4o", "messages": HELLO}).status_code == 404
    rows = ledger_rows(app, 2)
    assert sorted((r["model"], r["outcome"], r["status"]) for r in rows) == [
        ("gpt-4o", "refused", 404), ("premium", "refused", 403)]
    assert all(r["cost"] == 0 and r["completion_tokens"] == 0 for r in rows)


def test_a_fallback_the_caller_may_not_use_is_skipped_and_the_row_says_so(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, models={
        **MODELS, "open": {"backend": "fake", "model": "status-503", "fallbacks": ["premium"]}}))
    before = len(fake_upstream.requests)
    assert chat(app, {"model": "open", "messages": HELLO}).status_code == 502
    assert "premium" not in [r.get("model") for r in fake_upstream.requests[before:]]
    row = ledger_rows(app, 1)[0]
    assert json.loads(row["served_by"]) == [{"model": "premium", "skipped": "model_forbidden",
                                              "reason": "You may not use the model `premium`."}]
    admin_before = len(fake_upstream.requests)
    assert chat(app, {"model": "open", "messages": HELLO}, bearer(app, "root", "admin")).status_code == 200
    assert [r.get("model") for r in fake_upstream.requests[admin_before:]][-1] == "premium"


# --- 8. only chat parameters go upstream -----------------------------------------------------------


@pytest.mark.parametrize("key,value", [("api_base", "http://evil.example/v1"), ("api_key", "sk-x"),
                                       ("base_url", "http://evil.example"), ("mock_response", "free"),
                                       ("litellm_params", {"api_base": "http://evil.example"}),
                                       ("custom_llm_provider", "openai")])
def test_parameters_that_steer_the_upstream_are_refused(app, fake_upstream, key, value):
    before = len(fake_upstream.requests)
    response = chat(app, {"model": "echo", "messages": HELLO, key: value})
    assert response.status_code == 400 and response.json["error"]["code"] == "parameter_not_allowed"
    assert key in response.json["error"]["message"] and len(fake_upstream.requests) == before


def test_unknown_parameters_and_the_callers_metadata_do_not_reach_the_upstream(app, fake_upstream):
    response = chat(app, {"model": "echo", "messages": HELLO, "temperature": 0.5, "whatever": 1,
                          "metadata": {"trace_user_id": "mallory", "tags": ["free"]}, "user": "mallory"})
    assert response.status_code == 200
    sent = fake_upstream.requests[-1]
    assert sent["temperature"] == 0.5 and "whatever" not in sent and "metadata" not in sent
    assert sent["user"] == "alice"


# --- 9. deep JSON ---------------------------------------------------------------------------------


def test_json_nested_very_deep_is_a_400_not_a_500(app):
    body = "[" * 30000 + "]" * 30000
    response = app.test_client().post("/v1/chat/completions", data=body, headers={
        **bearer(app), "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_json"


def test_json_nested_very_deep_is_a_400_on_routes_that_read_their_own_body(make_app):
    """Routes without a declared schema read their body with request_body.json_object."""
    from agent_portal.request_body import json_object

    app = make_app()

    @app.post("/echo-body")
    def echo_body():
        return json_object()

    portal_of(app).access_by_endpoint["echo_body"] = "public"
    response = app.test_client().post("/echo-body", data="[" * 30000 + "]" * 30000,
                                      headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_json"
    assert "nested too deeply" in response.json["error"]["message"]


def test_json_nested_very_deep_on_a_websocket_is_refused_with_a_reason(app, live_server):
    from simple_websocket import ConnectionClosed

    server = live_server(app)
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/chat", headers=bearer(app))
    ws.send("[" * 30000 + "]" * 30000)
    with pytest.raises(ConnectionClosed) as closed:
        ws.receive(timeout=5)
    assert closed.value.reason == 1008 and "nested" in (closed.value.message or "")


def test_counting_a_megabyte_without_spaces_is_linear_and_close_to_the_tokenizer():
    counter = TokenCounter()
    counter.count_text("gpt-4o", "warm up the vocabulary")
    for text in ("z" * 1_000_000, "ab9/" * 250_000, "word " * 200_000):
        started = time.monotonic()
        counted = counter.count_text("gpt-4o", text)
        assert time.monotonic() - started < 1.0, (text[:8], time.monotonic() - started)
        assert counted > 0
    # where the tokenizer itself is quick, the bounded count agrees with it within a token a slice
    encoding = counter.encoding_for("gpt-4o")
    for text in ("z" * 3_000, "The quick brown fox " * 400 + "x" * 500, "naïve café " * 300):
        exact = len(encoding.encode_ordinary(text))
        assert abs(counter.count_text("gpt-4o", text) - exact) <= len(text) // 64 + 1


def test_counting_past_the_exact_part_extrapolates_its_rate():
    counter = TokenCounter()
    text = "Metering counts every token of the answer. " * 50_000  # 2.15 million characters
    started = time.monotonic()
    counted = counter.count_text("gpt-4o", text)
    assert time.monotonic() - started < 2.0
    exact = 50 * len(counter.encoding_for("gpt-4o").encode_ordinary(text[:len(text) // 50]))
    assert abs(counted - exact) / exact < 0.01
