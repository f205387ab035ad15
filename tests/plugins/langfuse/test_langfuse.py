"""Langfuse: traces, usage and health from its real APIs' shapes, and its failures."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry import trace as otel_trace

from agent_portal import portal_of

from conftest import bearer, chat_plugins
from fake_tracing import SEEDED, FakeLangfuse, _observation
from tracing_calls import HELLO, RANGE, chat, wait_for


@pytest.fixture
def langfuse():
    fake = FakeLangfuse()
    yield fake
    fake.stop()


def langfuse_section(fake, **extra):
    return {"public_key": "pk-lf-test-7c1f9a2e4b", "secret_key": "sk-lf-test-5d8e0b3a6c", "base_url": fake.url,
            "flush_interval_seconds": 0.1, "timeout_seconds": 2, "shutdown_seconds": 2, **extra}


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


def test_langfuse_usage_for_one_user_filters_and_for_everyone_groups_by_user(make_app):
    fake = FakeLangfuse(observations=SEEDED + [_observation("2026-11-02T13:00:00Z", "gpt-a", "bob", "2.0", 5, 5)])
    try:
        app = make_app(langfuse=langfuse_section(fake), observability={})
        mine = app.test_client().get(f"/observability/usage?source=langfuse&group_by=user,day&{RANGE}",
                                     headers=bearer(app, "alice")).json["data"]
        assert mine == [{"user": "alice", "day": "2026-11-02", "requests": 4, "prompt_tokens": 110,
                         "completion_tokens": 44, "cost": 0.75, "errors": None, "p50_latency_ms": None,
                         "p95_latency_ms": None}]
        assert fake.metrics_queries[-1]["filters"] == [
            {"column": "userId", "operator": "=", "value": "alice", "type": "string"}]
        everyone = app.test_client().get(f"/observability/usage?source=langfuse&group_by=user&{RANGE}",
                                         headers=bearer(app, "root", "admin"))
        assert everyone.status_code == 200, everyone.json
        assert [(r["user"], r["requests"], r["cost"]) for r in everyone.json["data"]] == [("bob", 1, 2.0),
                                                                                          ("alice", 4, 0.75)]
        sent = fake.metrics_queries[-1]
        assert sent["orderBy"] == [{"field": "sum_totalCost", "direction": "desc"}] and "timeDimension" not in sent
        refused = app.test_client().get(f"/observability/usage?source=langfuse&group_by=user,hour&{RANGE}",
                                        headers=bearer(app, "root", "admin"))
        assert refused.status_code == 502 and "without a time dimension" in refused.json["error"]["message"]
    finally:
        fake.stop()


def _hours_ago(hours: int, minutes: int = 1) -> str:
    moment = datetime.now(timezone.utc) - timedelta(hours=hours, minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_hourly_week_of_langfuse_usage_has_every_hour(make_app):
    fake = FakeLangfuse(observations=[_observation(_hours_ago(i), "gpt-a", "alice", "0.01", 1, 1)
                                      for i in range(168)])
    try:
        app = make_app(langfuse=langfuse_section(fake), observability={})
        rows = app.test_client().get("/observability/usage?source=langfuse&group_by=hour",
                                     headers=bearer(app, "root", "admin")).json["data"]
        assert len(rows) == 168 and sum(r["requests"] for r in rows) == 168
        assert fake.metrics_queries[-1]["config"]["row_limit"] == 1000
    finally:
        fake.stop()


def test_more_langfuse_rows_than_one_answer_holds_are_read_in_parts_never_cut(make_app):
    models = [f"model-{m}" for m in range(7)]
    fake = FakeLangfuse(observations=[_observation(_hours_ago(i), model, "alice", "0.01", 1, 1)
                                      for i in range(168) for model in models])
    try:
        app = make_app(langfuse=langfuse_section(fake), observability={})
        rows = app.test_client().get("/observability/usage?source=langfuse&group_by=hour,model",
                                     headers=bearer(app, "root", "admin")).json["data"]
        assert len(rows) == 7 * 168 and sum(r["requests"] for r in rows) == 7 * 168
        assert len(fake.metrics_queries) > 1  # the week was split: no single answer holds 1176 rows
    finally:
        fake.stop()


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


# --- what Langfuse shows of each call ----------------------------------------------------------


def test_a_streamed_calls_generation_starts_when_the_call_started(make_app, fake_upstream, langfuse):
    app = make_app(**chat_plugins(fake_upstream), langfuse=langfuse_section(langfuse))
    began = time.time_ns()
    chat(app, model="slow-200")
    ended = time.time_ns()
    assert wait_for(lambda: langfuse.spans)
    span = langfuse.spans[0]
    assert began <= span["start"] < began + 200_000_000  # not when the record was written, a second later
    assert span["end"] - span["start"] >= 900_000_000 and span["end"] <= ended + 50_000_000


def test_an_unpriced_call_exports_no_cost_and_a_priced_one_does(make_app, fake_upstream, langfuse):
    app = make_app(**chat_plugins(fake_upstream, models={"priced": {"backend": "fake", "model": "premium",
                                                                    "input_cost_per_token": 0.001}}),
                   langfuse=langfuse_section(langfuse))
    chat(app, model="echo")
    chat(app, model="priced")
    assert wait_for(lambda: len(langfuse.spans) == 2)
    by_model = {s["attributes"]["langfuse.observation.model.name"]: s["attributes"] for s in langfuse.spans}
    assert "langfuse.observation.cost_details" not in by_model["echo"]
    assert json.loads(by_model["premium"]["langfuse.observation.cost_details"]) == {"total": pytest.approx(0.007)}


def test_the_public_model_name_is_on_the_trace_and_filters_langfuse_usage(make_app, fake_upstream, langfuse):
    app = make_app(**chat_plugins(fake_upstream, models={"team-model": {"backend": "fake", "model": "echo"}}),
                   langfuse=langfuse_section(langfuse))
    chat(app, model="team-model")
    assert wait_for(lambda: langfuse.spans)
    attributes = langfuse.spans[0]["attributes"]
    assert attributes["langfuse.observation.model.name"] == "echo"
    assert json.loads(attributes["langfuse.observation.metadata.public_model"]) == "team-model"
    assert "model:team-model" in list(attributes["langfuse.trace.tags"])
    langfuse.observations.append(_observation("2026-11-02T10:00:00Z", "echo", "alice", "0.1", 7, 5,
                                              tags=["model:team-model"]))
    rows = app.test_client().get(f"/observability/usage?source=langfuse&group_by=model&model=team-model&{RANGE}",
                                 headers=bearer(app, "root", "admin")).json["data"]
    assert [(r["model"], r["requests"]) for r in rows] == [("echo", 1)]
