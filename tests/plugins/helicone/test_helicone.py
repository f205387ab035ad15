"""Helicone: its gateway, usage and health from its real APIs' shapes, and its failures."""
from __future__ import annotations

import json
import uuid

import pytest

from agent_portal.plugins.helicone.gateway import helicone_request_id

from conftest import bearer, chat_plugins, settled_rows
from fake_tracing import FakeHelicone
from tracing_calls import RANGE, chat


@pytest.fixture
def helicone():
    fake = FakeHelicone()
    yield fake
    fake.stop()


# --- Helicone ----------------------------------------------------------------------------------


def helicone_section(fake, **extra):
    return {"api_key": "hel-test-key-9e4b7a1c2d", "api_url": fake.url, "timeout_seconds": 2, **extra}


def test_without_an_api_key_yet_helicone_waits_for_one_and_the_portal_runs(make_app, fake_upstream, helicone):
    """A self-hosted Helicone's key is made in its UI after the first start: until then the
    portal boots, says what is missing, and offers none of the gateway's models."""
    app = make_app(chat={}, ledger={"flush_seconds": 0.05}, observability={"health_cache_seconds": 0},
                   helicone=helicone_section(helicone, api_key="", gateway_url=fake_upstream.base_url,
                                             models=["echo"]))
    admin = bearer(app, "root", "admin")
    component = app.test_client().get("/observability/health", headers=admin).json["components"]["helicone"]
    assert component["status"] == "degraded" and "no Helicone API key yet" in component["detail"]
    assert "echo" not in [m["id"] for m in app.test_client().get("/v1/models", headers=admin).json["data"]]
    usage = app.test_client().get("/observability/usage?source=helicone", headers=admin)
    assert usage.status_code == 502 and "no Helicone API key yet" in usage.json["error"]["message"]


def test_chat_through_the_helicone_gateway_carries_its_headers(make_app, fake_upstream, helicone):
    app = make_app(chat={}, ledger={"flush_seconds": 0.05}, helicone=helicone_section(
        helicone, gateway_url=fake_upstream.base_url, models=["echo"], upstream_api_key="sk-provider-8a2d5f1e9c",
        properties={"Team": "platform"}))
    request_id = "0123456789abcdef0123456789abcdef"
    response = chat(app, user="carol", model="echo", stream=False,
                    headers={"X-Request-ID": request_id, "X-Session-Id": "chat-42"})
    assert response.status_code == 200
    sent = {k.lower(): v for k, v in fake_upstream.headers[-1].items()}
    assert sent["helicone-auth"] == "Bearer hel-test-key-9e4b7a1c2d"
    assert sent["authorization"] == "Bearer sk-provider-8a2d5f1e9c"
    assert sent["helicone-user-id"] == "carol"
    assert sent["helicone-session-id"] == "chat-42"
    assert sent["helicone-request-id"] == helicone_request_id(request_id)
    assert sent["helicone-property-team"] == "platform"
    row = settled_rows(app)[0]
    assert row["request_id"] == request_id and row["upstream_call_id"] == sent["helicone-request-id"]


@pytest.mark.parametrize("request_id", ["0123456789abcdef0123456789abcdef", "ffffffffffffffffffffffffffffffff",
                                        "0b6c1cb5-64c5-4a4c-8a39-5a1a1e0f6f3c", "req-lf-1", "a" * 120])
def test_every_helicone_request_id_is_a_standard_uuid_that_maps_back_to_the_request(request_id):
    sent = helicone_request_id(request_id)
    parsed = uuid.UUID(sent)
    assert str(parsed) == sent and 1 <= parsed.version <= 5 and parsed.variant == uuid.RFC_4122
    assert helicone_request_id(request_id) == sent != helicone_request_id(request_id + "x")


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


def test_helicone_usage_reads_the_clickhouse_query_whose_rows_carry_cost(make_app, helicone):
    app = make_app(helicone=helicone_section(helicone), observability={})
    rows = app.test_client().get(f"/observability/usage?source=helicone&group_by=model&{RANGE}",
                                 headers=bearer(app, "root", "admin")).json["data"]
    assert [(r["model"], r["requests"], r["cost"]) for r in rows] == [("gpt-a", 2, 0.01), ("gpt-b", 1, 0.02)]
    assert {p for _, p, _, _ in helicone.requests} == {"/v1/request/query-clickhouse"}


@pytest.mark.parametrize("who", ["alice", "root"])
def test_helicone_usage_filters_by_model_and_groups_by_hour_for_a_user_and_an_admin(make_app, helicone, who):
    app = make_app(helicone=helicone_section(helicone), observability={})
    headers = bearer(app, who, "admin" if who == "root" else "user")
    answer = app.test_client().get(f"/observability/usage?source=helicone&group_by=hour&model=gpt-a&{RANGE}",
                                   headers=headers)
    assert answer.status_code == 200, answer.json
    assert [(r["hour"], r["requests"]) for r in answer.json["data"]] == [("2026-11-02T10:00:00Z", 1),
                                                                         ("2026-11-02T11:00:00Z", 1)]
    sent = json.loads(helicone.requests[-1][3])["filter"]
    if who == "alice":
        assert sent == {"left": {"request_response_rmt": {"user_id": {"equals": "alice"}}}, "operator": "and",
                        "right": {"request_response_rmt": {"model": {"equals": "gpt-a"}}}}
    else:
        assert sent == {"request_response_rmt": {"model": {"equals": "gpt-a"}}}


def test_more_helicone_requests_than_it_pages_through_is_an_error_not_a_cut_answer(make_app):
    rows = [{"request_id": f"r{i}", "request_created_at": "2026-11-02T10:00:00Z", "request_user_id": "alice",
             "request_model": "gpt-a", "response_status": 200, "delay_ms": 1, "prompt_tokens": 1,
             "completion_tokens": 1, "total_tokens": 2, "cost": 0.001} for i in range(10_500)]
    fake = FakeHelicone(rows=rows)
    try:
        app = make_app(helicone=helicone_section(fake), observability={})
        answer = app.test_client().get(f"/observability/usage?source=helicone&group_by=model&{RANGE}",
                                       headers=bearer(app, "root", "admin"))
        assert answer.status_code == 502 and "more than 10000" in answer.json["error"]["message"]
    finally:
        fake.stop()
