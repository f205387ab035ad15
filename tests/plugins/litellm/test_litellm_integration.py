"""Against a real LiteLLM proxy, started offline from tests/litellm.test.yaml in its own venv."""
from __future__ import annotations

import json
import time

import openai
import pytest

from agent_portal import portal_of

from conftest import bearer

HELLO = [{"role": "user", "content": "hello"}]
pytestmark = pytest.mark.integration


@pytest.fixture
def app(make_app, litellm):
    return make_app(chat={"retries": 0, "between_chunks_timeout_seconds": 5},
                    litellm={"url": litellm["url"], "api_key": litellm["key"]},
                    ledger={"flush_seconds": 0.05}, observability={"health_cache_seconds": 0})


def wait_records(app, count):
    portal = portal_of(app)
    deadline = time.monotonic() + 5
    while portal.dispatcher.delivered < count and time.monotonic() < deadline:
        time.sleep(0.02)
    portal.extensions["ledger"].writer.flush_once()
    return portal.extensions["ledger"].recent(10)


def test_models_are_discovered_from_litellm(app):
    ids = {m["id"] for m in app.test_client().get("/v1/models", headers=bearer(app)).json["data"]}
    assert {"demo-chat", "demo-mini", "fake-echo"} <= ids


def test_openai_client_streams_a_mock_model_through_portal_and_litellm(app, live_server):
    server = live_server(app)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=bearer(app)["Authorization"].split()[1],
                           max_retries=0)
    chunks = list(client.chat.completions.create(model="demo-mini", messages=HELLO, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hi! This is the small offline demo model."
    record = wait_records(app, 1)[0]
    assert record["outcome"] == "ok" and record["backend"] == "litellm"
    assert record["completion_tokens"] > 0 and record["cost"] > 0  # LiteLLM's own cost, from model_info


def test_real_http_through_litellm_to_the_fake_upstream_is_attributed(app, fake_upstream):
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app, "dora"),
                                      json={"model": "fake-echo", "messages": HELLO, "stream": True})
    data = [line[6:] for line in response.data.decode().split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert not any('"usage"' in d for d in data)  # the client did not ask for it
    # LiteLLM keeps `user` and `metadata` for its own logging and callbacks (Langfuse); it does
    # not pass them on to the provider, so the fake sees the call but not the caller.
    assert fake_upstream.requests[-1]["stream_options"] == {"include_usage": True}
    record = wait_records(app, 1)[0]
    assert record["actor_id"] == "dora" and record["completion_tokens"] == 5
    assert record["cost"] == pytest.approx(7 * 0.000001 + 5 * 0.000002)
    assert record["upstream_call_id"]


def test_non_streamed_call_records_litellm_cost_header(app):
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app),
                                      json={"model": "demo-chat", "messages": HELLO})
    assert response.status_code == 200
    assert response.headers.get("x-litellm-call-id")
    record = wait_records(app, 1)[0]
    assert record["cost"] > 0 and record["prompt_tokens"] > 0


def test_upstream_reset_behind_litellm_never_looks_complete(app):
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app),
                                      json={"model": "fake-reset-mid", "messages": HELLO, "stream": True})
    text = response.data.decode()
    if response.status_code == 200:
        assert "data: [DONE]" not in text and '"error"' in text
    else:
        assert response.status_code >= 500 and response.json["error"]
    assert wait_records(app, 1)[0]["outcome"] != "ok"


@pytest.mark.parametrize("primary", ["fake-reset-mid", "fake-error-mid"])
def test_a_stream_broken_behind_litellm_is_finished_by_the_fallback(make_app, litellm, primary):
    app = make_app(chat={"retries": 0, "between_chunks_timeout_seconds": 5, "models": {
                       "resilient": {"backend": "litellm", "model": primary, "fallbacks": ["steady"]},
                       "steady": {"backend": "litellm", "model": "fake-echo"}}},
                   litellm={"url": litellm["url"], "api_key": litellm["key"]},
                   ledger={"flush_seconds": 0.05}, observability={"health_cache_seconds": 0})
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app),
                                      json={"model": "resilient", "messages": HELLO, "stream": True})
    events = [e[6:] for e in response.data.decode().split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]" and not any('"error"' in e for e in events), events[-3:]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in map(json.loads, events[:-1])
                   if c.get("choices"))
    assert text == "tok0 tok1 tok2 tok3 tok4 "  # LiteLLM's in-band error continued, nothing lost or twice
    row = wait_records(app, 1)[0]
    assert row["outcome"] == "ok" and [p["model"] for p in json.loads(row["served_by"])] == [primary, "fake-echo"]


def test_a_model_litellm_says_takes_no_prefill_is_never_sent_a_continuation(make_app, litellm, fake_upstream):
    app = make_app(chat={"retries": 0, "between_chunks_timeout_seconds": 5, "models": {
                       "resilient": {"backend": "litellm", "model": "fake-reset-mid",
                                     "fallbacks": ["careful", "steady"]},
                       "careful": {"backend": "litellm", "model": "fake-no-prefill"},
                       "steady": {"backend": "litellm", "model": "fake-echo"}}},
                   litellm={"url": litellm["url"], "api_key": litellm["key"]},
                   ledger={"flush_seconds": 0.05}, observability={"health_cache_seconds": 0})
    catalog = {m["model"]: m for m in app.test_client().get(
        "/admin/models", headers=bearer(app, "root", "admin")).json["data"]}
    assert catalog["careful"]["supports_prefill"] is False  # LiteLLM's model info said so
    assert catalog["steady"]["supports_prefill"] is None    # nothing known: tried
    before = len(fake_upstream.requests)
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app),
                                      json={"model": "resilient", "messages": HELLO, "stream": True})
    events = [e[6:] for e in response.data.decode().split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    assert [r.get("model") for r in fake_upstream.requests[before:]] == ["reset-mid", "echo"]


def test_a_429_behind_litellm_is_waited_for_as_its_retry_after_says(make_app, litellm, fake_upstream):
    app = make_app(chat={"retries": 1, "retry_max_wait_seconds": 1, "models": {
                       "limited": {"backend": "litellm", "model": "fake-status-429", "fallbacks": ["steady"]},
                       "steady": {"backend": "litellm", "model": "fake-echo"}}},
                   litellm={"url": litellm["url"], "api_key": litellm["key"]},
                   ledger={"flush_seconds": 0.05}, observability={"health_cache_seconds": 0})
    before = len(fake_upstream.requests)
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app),
                                      json={"model": "limited", "messages": HELLO})
    assert response.status_code == 200
    asked = [r.get("model") for r in fake_upstream.requests[before:]]
    assert asked.count("status-429") >= 2 and asked[-1] == "echo", asked  # waited, asked again, then the next


def test_wrong_litellm_key_never_passes_and_keeps_the_openai_error_shape(make_app, litellm):
    # Without its database LiteLLM answers 400 "No connected db." to any key but the master key
    # (CONTRACTS.md); a real 401/403 from an upstream becomes the portal's 502 (see test_chat).
    app = make_app(chat={"retries": 0}, litellm={"url": litellm["url"], "api_key": "sk-wrong-6b3e9a1d4c7f",
                                                   "models": ["demo-chat"]})
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app),
                                      json={"model": "demo-chat", "messages": HELLO})
    assert response.status_code in (400, 502)
    assert response.json["error"]["message"]


def test_litellm_health_check_reads_readiness(app):
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin"))
    assert health.status_code == 200
    assert health.json["components"]["litellm"]["status"] == "up"


def test_litellm_attribution_metadata_is_sent(app):
    backend = portal_of(app).extensions["litellm"]
    payload = {"model": "x", "metadata": {"tags": ["mine"]}}
    from agent_portal import Actor

    backend.attribute(payload, Actor(id="erin", role="user", via="test"), "req-9", "chat-1")
    assert payload["user"] == "erin"
    assert payload["metadata"]["trace_user_id"] == "erin"
    assert payload["metadata"]["session_id"] == "chat-1"
    assert payload["metadata"]["tags"] == ["mine", "agent-portal", "role:user"]
    assert json.dumps(payload)

