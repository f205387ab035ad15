"""Chat through the portal: streaming, usage, attribution, every upstream failure, bad input
(over a WebSocket: test_ws_chat.py)."""
from __future__ import annotations

import json
import socket
import time

import openai
import pytest

from conftest import bearer, chat_plugins, settled_rows as records

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def app(make_app, fake_upstream):
    models = {
        "priced": {"backend": "fake", "model": "pricey", "input_cost_per_token": 0.001,
                   "output_cost_per_token": 0.002},
        "with-fallback": {"backend": "fake", "model": "status-503", "fallbacks": ["echo"]},
        "admins-only": {"backend": "fake", "model": "premium", "roles": ["admin"]},
    }
    return make_app(**chat_plugins(fake_upstream, models=models))


def post_chat(app, body, headers=None, path="/v1/chat/completions"):
    return app.test_client().post(path, json=body, headers=headers or bearer(app))


def sse_data(raw: bytes) -> list:
    return [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]


# --- the openai client, unchanged ----------------------------------------------------------------


def test_openai_client_non_streamed(app, live_server):
    server = live_server(app)
    token = bearer(app)["Authorization"].split()[1]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0)
    answer = client.chat.completions.create(model="echo", messages=HELLO, max_tokens=3)
    assert answer.choices[0].message.content == "tok0 tok1 tok2"
    assert answer.usage.completion_tokens == 3


def test_openai_client_streamed(app, live_server):
    server = live_server(app)
    token = bearer(app)["Authorization"].split()[1]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0)
    chunks = list(client.chat.completions.create(model="echo", messages=HELLO, stream=True, max_tokens=4))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 "
    assert all(c.usage is None for c in chunks)  # the usage chunk the portal asked for is stripped


def test_openai_client_sees_a_mid_stream_failure_as_an_error(app, live_server):
    server = live_server(app)
    token = bearer(app)["Authorization"].split()[1]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="reset-mid", messages=HELLO, stream=True))


def test_openai_client_lists_models(app, live_server):
    server = live_server(app)
    token = bearer(app)["Authorization"].split()[1]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0)
    ids = {m.id for m in client.models.list()}
    assert {"echo", "priced", "with-fallback"} <= ids and "admins-only" not in ids


# --- usage, attribution, records ----------------------------------------------------------------


def test_usage_is_requested_upstream_and_stripped_when_the_client_did_not_ask(app, fake_upstream):
    response = post_chat(app, {"model": "echo", "messages": HELLO, "stream": True})
    sent = fake_upstream.requests[-1]
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["user"] == "alice"
    assert all('"usage"' not in d for d in sse_data(response.data))
    assert sse_data(response.data)[-1] == "[DONE]"
    record = records(app)[0]
    assert (record["prompt_tokens"], record["completion_tokens"], record["partial"]) == (7, 5, False)


@pytest.mark.parametrize("model", ["echo", "echo-ll"])
def test_usage_chunk_is_kept_when_the_client_asked_in_either_shape(app, model):
    body = {"model": model, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    data = sse_data(post_chat(app, body).data)
    usage_chunks = [json.loads(d) for d in data if d != "[DONE]" and json.loads(d).get("usage")]
    assert len(usage_chunks) == 1 and usage_chunks[0]["usage"]["completion_tokens"] == 5
    record = records(app)[0]
    assert record["completion_tokens"] == 5
    assert record["cost"] == (0.0042 if model == "echo-ll" else 0.0)


def test_crlf_framed_upstream_streams_are_relayed(app):
    response = post_chat(app, {"model": "echo-crlf", "messages": HELLO, "stream": True, "max_tokens": 3})
    data = sse_data(response.data)
    assert data[-1] == "[DONE]" and sum("tok" in d for d in data) == 3
    assert records(app)[0]["completion_tokens"] == 3


def test_cost_comes_from_the_config_price_when_the_upstream_sends_none(app):
    post_chat(app, {"model": "priced", "messages": HELLO, "max_tokens": 5})
    record = records(app)[0]
    assert record["cost"] == pytest.approx(7 * 0.001 + 5 * 0.002)
    assert record["model"] == "priced" and record["upstream_model"] == "pricey"


def test_request_id_and_caller_reach_the_upstream(app, fake_upstream):
    response = post_chat(app, {"model": "echo", "messages": HELLO},
                         headers={**bearer(app, "carol"), "X-Request-ID": "trace-me-1"})
    assert response.headers["X-Request-ID"] == "trace-me-1"
    assert fake_upstream.headers[-1]["X-Request-ID"] == "trace-me-1"
    assert fake_upstream.requests[-1]["user"] == "carol"
    record = records(app)[0]
    assert record["request_id"] == "trace-me-1" and record["actor_id"] == "carol"
    assert record["ttft"] is not None and record["duration"] >= record["ttft"]


def test_seed_paths_serve_chat_and_chat_stream_always_streams(app):
    plain = post_chat(app, {"model": "echo", "messages": HELLO}, path="/chat/completions")
    assert plain.status_code == 200 and plain.json["object"] == "chat.completion"
    streamed = post_chat(app, {"model": "echo", "messages": HELLO}, path="/chat/stream")
    assert streamed.mimetype == "text/event-stream"
    assert streamed.headers["X-Accel-Buffering"] == "no" and streamed.headers["Cache-Control"] == "no-cache"
    assert sse_data(streamed.data)[-1] == "[DONE]"


# --- failures before the first byte ----------------------------------------------------------


@pytest.mark.parametrize("model,status,code,tries", [
    ("reset-before", 502, "upstream_unreachable", 2),
    ("hang-before", 504, "upstream_timeout", 1),  # a timeout is not retried on the same target
    ("status-503", 502, "upstream_error", 2),
    ("status-429", 429, "upstream_rate_limited", 2),
])
def test_failures_before_the_first_byte_are_retried_then_answered(app, fake_upstream, model, status, code, tries):
    before = len(fake_upstream.requests)
    response = post_chat(app, {"model": model, "messages": HELLO, "stream": True})
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert len(fake_upstream.requests) - before == tries  # retries: 1
    record = records(app)[0]
    assert record["outcome"] == code and record["status"] == status


def test_upstream_4xx_is_passed_on_with_its_message_and_not_retried(app, fake_upstream):
    before = len(fake_upstream.requests)
    response = post_chat(app, {"model": "status-400", "messages": HELLO})
    assert response.status_code == 400
    assert response.json["error"]["message"] == "fake upstream says 400"
    assert len(fake_upstream.requests) - before == 1


def test_upstream_refusing_the_portals_key_is_502_not_the_callers_401(app):
    response = post_chat(app, {"model": "status-401", "messages": HELLO})
    assert response.status_code == 502
    assert response.json["error"]["code"] == "upstream_auth_failed"


def test_flaky_upstream_succeeds_on_retry(app):
    response = post_chat(app, {"model": "flaky-503", "messages": HELLO},
                         headers=bearer(app, f"flaky-{time.monotonic_ns()}"))
    assert response.status_code == 200


def test_fallback_model_serves_when_the_first_fails(app, fake_upstream):
    response = post_chat(app, {"model": "with-fallback", "messages": HELLO, "stream": True})
    assert response.status_code == 200
    assert sse_data(response.data)[-1] == "[DONE]"
    assert [r["model"] for r in fake_upstream.requests[-3:]] == ["status-503", "status-503", "echo"]
    assert records(app)[0]["upstream_model"] == "echo"


def test_unreachable_upstream_is_502(make_app):
    app = make_app(chat={"retries": 0}, openai_compat={"upstreams": {"gone": {
        "base_url": "http://127.0.0.1:9/v1", "models": ["ghost"]}}}, ledger={})
    response = post_chat(app, {"model": "ghost", "messages": HELLO})
    assert response.status_code == 502
    assert response.json["error"]["type"] == "upstream_error"


# --- failures after the first byte ------------------------------------------------------------


@pytest.mark.parametrize("model,outcome", [
    ("reset-mid", "upstream_reset"),
    ("stall-mid", "upstream_stalled"),
    ("garbage-mid", "upstream_malformed"),
])
def test_failure_after_the_first_byte_ends_with_an_error_event_not_done(app, model, outcome):
    response = post_chat(app, {"model": model, "messages": HELLO, "stream": True})
    data = sse_data(response.data)
    assert "[DONE]" not in data
    assert "error" in json.loads(data[-1])
    assert any("tok0" in d for d in data)  # what arrived before the failure was forwarded
    record = records(app)[0]
    assert record["outcome"] == outcome and record["partial"] is True


def test_heartbeats_flow_while_the_upstream_is_silent(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, heartbeat_seconds=0.05))
    response = post_chat(app, {"model": "slow-200", "messages": HELLO, "stream": True, "max_tokens": 3})
    assert b": keep-alive\n\n" in response.data
    assert sse_data(response.data)[-1] == "[DONE]"


def test_client_going_away_closes_the_upstream_and_is_recorded(app, fake_upstream, live_server):
    server = live_server(app)
    disconnects = fake_upstream.disconnects
    body = json.dumps({"model": "long", "messages": HELLO, "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    token = bearer(app)["Authorization"]
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    received = b""
    while received.count(b"data: ") < 3:
        received += sock.recv(4096)
    sock.close()
    deadline = time.monotonic() + 3
    while fake_upstream.disconnects == disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_upstream.disconnects == disconnects + 1  # the upstream saw the portal leave
    record = records(app)[0]
    assert record["outcome"] == "client_disconnected" and record["partial"] is True


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body,code", [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_body"),
    (json.dumps({"messages": HELLO}), "missing_model"),
    (json.dumps({"model": "echo"}), "missing_messages"),
    (json.dumps({"model": "echo", "messages": "hi"}), "missing_messages"),
    (json.dumps({"model": "echo", "messages": ["hi"]}), "invalid_messages"),
    (json.dumps({"model": "echo", "messages": HELLO, "stream": "yes"}), "invalid_type"),
    (json.dumps({"model": "echo", "messages": HELLO, "temperature": "hot"}), "invalid_type"),
    (json.dumps({"model": 7, "messages": HELLO}), "missing_model"),
])
def test_bad_chat_bodies_get_a_clear_400_and_nothing_goes_upstream(app, fake_upstream, body, code):
    before = len(fake_upstream.requests)
    response = app.test_client().post("/v1/chat/completions", data=body,
                                      headers={**bearer(app), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["error"]["code"] == code
    assert len(fake_upstream.requests) == before


def test_unknown_model_is_404_in_openai_shape(app, fake_upstream):
    before = len(fake_upstream.requests)
    response = post_chat(app, {"model": "gpt-nothing", "messages": HELLO})
    assert response.status_code == 404
    assert response.json["error"]["code"] == "model_not_found"
    assert response.json["error"]["type"] == "invalid_request_error"
    assert len(fake_upstream.requests) == before


def test_model_limited_to_admins_is_refused_to_users(app):
    assert post_chat(app, {"model": "admins-only", "messages": HELLO}).status_code == 403
    assert post_chat(app, {"model": "admins-only", "messages": HELLO},
                     headers=bearer(app, "root", "admin")).status_code == 200


def test_anonymous_chat_is_401(app):
    response = app.test_client().post("/v1/chat/completions", json={"model": "echo", "messages": HELLO})
    assert response.status_code == 401


def test_a_model_added_upstream_appears_without_touching_the_portal(make_app, fake_upstream):
    app = make_app(chat={}, openai_compat={"upstreams": {"fake": {"base_url": fake_upstream.base_url,
                                                                   "refresh_seconds": 1}}})
    models = lambda: {m["id"] for m in app.test_client().get("/v1/models", headers=bearer(app)).json["data"]}
    assert "echo-new" not in models()
    fake_upstream.models.append("echo-new")
    try:
        deadline = time.monotonic() + 5
        while "echo-new" not in models() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "echo-new" in models()
    finally:
        fake_upstream.models.remove("echo-new")


def test_finished_streams_leave_their_upstream_connection_for_reuse(app, fake_upstream):
    for _ in range(5):
        assert sse_data(post_chat(app, {"model": "echo", "messages": HELLO, "stream": True}).data)[-1] == "[DONE]"
    assert len(set(fake_upstream.connection_of_request[-5:])) == 1  # one keep-alive connection served all five


def test_streams_abandoned_mid_body_never_return_their_connection(app, fake_upstream):
    # the upstream stalls mid-body: its connection can never be reused (a finished body, even a
    # malformed one, may be: the HTTP message itself ended cleanly)
    for _ in range(2):
        post_chat(app, {"model": "stall-mid", "messages": HELLO, "stream": True}).get_data()
    assert len(set(fake_upstream.connection_of_request[-2:])) == 2


@pytest.mark.parametrize("field, value", [("max_tokens", 10 ** 400), ("max_tokens", 0), ("n", 10 ** 30),
                                          ("max_completion_tokens", 2.5), ("temperature", 1e308 * 10)])
def test_hostile_sizes_are_refused_not_a_500(app, fake_upstream, field, value):
    # found by fuzzing /openapi.json: a huge max_tokens overflowed the cost estimate into a 500
    body = json.dumps({"model": "echo", "messages": HELLO, field: value}).replace("Infinity", "1e999")
    response = app.test_client().post("/v1/chat/completions", data=body,
                                      headers={**bearer(app), "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json["error"]["code"] in ("invalid_type", "invalid_json")
