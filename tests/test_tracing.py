"""Langfuse and Helicone: traces, usage and health from their real APIs' shapes, and their failures."""
from __future__ import annotations

import json
import time
import pytest
from opentelemetry import trace as otel_trace

from agent_portal import portal_of

from conftest import bearer, chat_plugins
from fake_tracing import FakeHelicone, FakeLangfuse

HELLO = [{"role": "user", "content": "hi"}]
RANGE = "from=2026-11-01&to=2026-11-05"


@pytest.fixture
def langfuse():
    fake = FakeLangfuse()
    yield fake
    fake.stop()


@pytest.fixture
def helicone():
    fake = FakeHelicone()
    yield fake
    fake.stop()


def langfuse_section(fake, **extra):
    return {"public_key": "pk-lf-test", "secret_key": "sk-lf-test", "base_url": fake.url,
            "flush_interval_seconds": 0.1, "timeout_seconds": 2, "shutdown_seconds": 2, **extra}


def chat(app, user="alice", model="echo-ll", stream=True, headers=None):
    response = app.test_client().post("/v1/chat/completions", headers={**bearer(app, user), **(headers or {})},
                                      json={"model": model, "messages": HELLO, "stream": stream})
    response.get_data()
    return response


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


# --- Langfuse traces ---------------------------------------------------------------------------


def test_each_call_becomes_a_generation_with_user_model_tokens_and_cost(make_app, fake_upstream, langfuse):
    app = make_app(**chat_plugins(fake_upstream), langfuse=langfuse_section(langfuse))
    chat(app, headers={"X-Session-Id": "chat-7", "X-Request-ID": "req-lf-1"})
    assert wait_for(lambda: langfuse.spans)
    attributes = langfuse.spans[0]["attributes"]
    assert attributes["langfuse.observation.type"] == "generation"
    assert attributes["user.id"] == "alice" and attributes["session.id"] == "chat-7"
    assert attributes["langfuse.observation.model.name"] == "echo-ll"
    assert json.loads(attributes["langfuse.observation.usage_details"]) == {"input": 7, "output": 5}
    assert json.loads(attributes["langfuse.observation.cost_details"]) == {"total": 0.0042}
    assert json.loads(attributes["langfuse.observation.metadata.request_id"]) == "req-lf-1"
    assert "langfuse.observation.completion_start_time" in attributes
    assert attributes["langfuse.observation.output"] == "tok0 tok1 tok2 tok3 tok4 "
    assert json.loads(attributes["langfuse.observation.input"]) == HELLO


def test_payloads_stay_out_of_traces_when_log_payloads_is_false(make_app, fake_upstream, langfuse):
    app = make_app(**chat_plugins(fake_upstream), langfuse=langfuse_section(langfuse, log_payloads=False))
    chat(app)
    assert wait_for(lambda: langfuse.spans)
    attributes = langfuse.spans[0]["attributes"]
    assert "langfuse.observation.input" not in attributes and "langfuse.observation.output" not in attributes


def test_langfuse_keeps_its_own_tracer_provider(make_app, fake_upstream, langfuse):
    before = otel_trace.get_tracer_provider()
    app = make_app(**chat_plugins(fake_upstream), langfuse=langfuse_section(langfuse))
    assert otel_trace.get_tracer_provider() is before
    assert portal_of(app).extensions["langfuse"].provider is not before


def test_shutdown_flushes_queued_traces(make_app, fake_upstream, langfuse):
    app = make_app(**chat_plugins(fake_upstream), langfuse=langfuse_section(langfuse, flush_interval_seconds=60))
    for _ in range(3):
        chat(app)
    portal = portal_of(app)
    assert wait_for(lambda: portal.dispatcher.delivered == 3)
    portal.shutdown()
    assert len(langfuse.spans) == 3


@pytest.mark.parametrize("failure", ["down", "slow", "garbage"])
def test_langfuse_failing_leaves_chat_untouched(make_app, fake_upstream, failure):
    fake = FakeLangfuse()
    if failure == "down":
        fake.stop()
    else:
        fake.mode = failure
    try:
        app = make_app(**chat_plugins(fake_upstream), langfuse=langfuse_section(fake))
        answers = [chat(app, stream=bool(i % 2)) for i in range(6)]
        assert [a.status_code for a in answers] == [200] * 6
        portal = portal_of(app)
        assert wait_for(lambda: portal.dispatcher.delivered == 6)
        portal.extensions["ledger"].writer.flush_once()
        assert len(portal.extensions["ledger"].recent(20)) == 6  # every call recorded all the same
        health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
        assert health["components"]["langfuse"]["status"] == "down"
        assert health["components"]["langfuse"]["detail"]
        usage = app.test_client().get(f"/observability/usage?source=all&{RANGE}",
                                      headers=bearer(app, "root", "admin")).json["sources"]
        assert usage["langfuse"]["ok"] is False and usage["ledger"]["ok"] is True
    finally:
        if failure != "down":
            fake.stop()


# --- Langfuse usage ----------------------------------------------------------------------------


def test_langfuse_usage_from_the_v2_metrics_api_with_string_numbers(make_app, langfuse):
    app = make_app(langfuse=langfuse_section(langfuse), observability={})
    answer = app.test_client().get(f"/observability/usage?source=langfuse&group_by=model&{RANGE}",
                                   headers=bearer(app, "root", "admin")).json
    assert [(r["model"], r["requests"], r["prompt_tokens"], r["completion_tokens"], r["cost"]) for r in answer["data"]] \
        == [("gpt-a", 3, 100, 40, 0.25), ("gpt-b", 1, 10, 4, 0.5)]
    query = langfuse.metrics_queries[-1]
    assert query["view"] == "observations" and query["dimensions"] == [{"field": "providedModelName"}]


def test_langfuse_usage_filters_by_user_instead_of_grouping(make_app, langfuse):
    app = make_app(langfuse=langfuse_section(langfuse), observability={})
    mine = app.test_client().get(f"/observability/usage?source=langfuse&group_by=user,day&{RANGE}",
                                 headers=bearer(app, "alice")).json["data"]
    assert mine == [{"user": "alice", "day": "2026-11-02", "requests": 4, "prompt_tokens": 110,
                     "completion_tokens": 44, "cost": 0.75, "errors": None, "p50_latency_ms": None,
                     "p95_latency_ms": None}]
    assert langfuse.metrics_queries[-1]["filters"] == [
        {"column": "userId", "operator": "=", "value": "alice", "type": "string"}]
    everyone = app.test_client().get(f"/observability/usage?source=langfuse&group_by=user&{RANGE}",
                                     headers=bearer(app, "root", "admin"))
    assert everyone.status_code == 502 and "group by user" in everyone.json["error"]["message"]


def test_langfuse_usage_falls_back_to_daily_metrics_on_older_servers(make_app):
    fake = FakeLangfuse(v2=False)
    try:
        app = make_app(langfuse=langfuse_section(fake), observability={})
        rows = app.test_client().get(f"/observability/usage?source=langfuse&group_by=day,model&{RANGE}",
                                     headers=bearer(app, "root", "admin")).json["data"]
        assert [(r["day"], r["model"], r["requests"], r["cost"]) for r in rows] == [
            ("2026-11-02", "gpt-a", 3, 0.25), ("2026-11-03", "gpt-b", 1, 0.5)]
    finally:
        fake.stop()


def test_langfuse_health_reads_its_health_endpoint(make_app, langfuse):
    app = make_app(langfuse=langfuse_section(langfuse), observability={"health_cache_seconds": 0})
    component = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json[
        "components"]["langfuse"]
    assert component["status"] == "up" and component["version"] == "4.16.0"


# --- Helicone ----------------------------------------------------------------------------------


def helicone_section(fake, **extra):
    return {"api_key": "hel-test-key", "api_url": fake.url, "timeout_seconds": 2, **extra}


def test_chat_through_the_helicone_gateway_carries_its_headers(make_app, fake_upstream, helicone):
    app = make_app(chat={}, ledger={}, helicone=helicone_section(
        helicone, gateway_url=fake_upstream.base_url, models=["echo"], upstream_api_key="sk-provider",
        properties={"Team": "platform"}))
    request_id = "0123456789abcdef0123456789abcdef"
    response = chat(app, user="carol", model="echo", stream=False, headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    sent = {k.lower(): v for k, v in fake_upstream.headers[-1].items()}
    assert sent["helicone-auth"] == "Bearer hel-test-key"
    assert sent["authorization"] == "Bearer sk-provider"
    assert sent["helicone-user-id"] == "carol"
    assert sent["helicone-request-id"] == "01234567-89ab-cdef-0123-456789abcdef"
    assert sent["helicone-property-team"] == "platform"


def test_helicone_usage_per_user_from_user_metrics(make_app, helicone):
    app = make_app(helicone=helicone_section(helicone), observability={})
    rows = app.test_client().get(f"/observability/usage?source=helicone&group_by=user&{RANGE}",
                                 headers=bearer(app, "root", "admin")).json["data"]
    assert [(r["user"], r["requests"], r["cost"]) for r in rows] == [("alice", 2, 0.01), ("bob", 1, 0.02)]
    path = [p for _, p, _, _ in helicone.requests][-1]
    assert path == "/v1/user/metrics/query"


def test_helicone_usage_per_model_and_day_from_request_rows(make_app, helicone):
    app = make_app(helicone=helicone_section(helicone), observability={})
    rows = app.test_client().get(f"/observability/usage?source=helicone&group_by=model,day&{RANGE}",
                                 headers=bearer(app, "root", "admin")).json["data"]
    assert [(r["model"], r["day"], r["requests"], r["errors"], r["p50_latency_ms"]) for r in rows] == [
        ("gpt-a", "2026-11-02", 2, 1, 100.0), ("gpt-b", "2026-11-03", 1, 0, 200.0)]


def test_helicone_usage_for_a_user_filters_upstream(make_app, helicone):
    app = make_app(helicone=helicone_section(helicone), observability={})
    rows = app.test_client().get(f"/observability/usage?source=helicone&group_by=model&{RANGE}",
                                 headers=bearer(app, "bob")).json["data"]
    assert [(r["model"], r["requests"]) for r in rows] == [("gpt-b", 1)]
    body = json.loads(helicone.requests[-1][3])
    assert body["filter"] == {"request_response_rmt": {"user_id": {"equals": "bob"}}}


@pytest.mark.parametrize("failure", ["down", "slow", "garbage"])
def test_helicone_failing_is_an_isolated_error_and_health_down(make_app, fake_upstream, failure):
    fake = FakeHelicone()
    if failure == "down":
        fake.stop()
    else:
        fake.mode = failure
    try:
        app = make_app(**chat_plugins(fake_upstream), helicone=helicone_section(fake, timeout_seconds=1))
        assert [chat(app).status_code for _ in range(3)] == [200] * 3
        usage = app.test_client().get(f"/observability/usage?source=all&{RANGE}",
                                      headers=bearer(app, "root", "admin")).json["sources"]
        assert usage["helicone"]["ok"] is False and usage["ledger"]["ok"] is True
        health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
        assert health["components"]["helicone"]["status"] == "down"
    finally:
        if failure != "down":
            fake.stop()


def test_helicone_health_reads_healthcheck(make_app, helicone):
    app = make_app(helicone=helicone_section(helicone), observability={"health_cache_seconds": 0})
    component = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json[
        "components"]["helicone"]
    assert component == {**component, "status": "up", "detail": "healthy :)"}

