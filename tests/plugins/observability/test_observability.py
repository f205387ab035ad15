"""The observability API: usage per caller, health, models, metrics, live events."""
from __future__ import annotations

import csv
import io
import json
import time

import pytest
from ws_client import WebSocketClient

from agent_portal import HealthCheck, UsageProvider, hookimpl, portal_of

from conftest import bearer, chat_plugins

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def app(make_app, fake_upstream):
    return make_app(**chat_plugins(fake_upstream))


def chat(app, user, model="echo", stream=False):
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app, user),
                                      json={"model": model, "messages": HELLO, "stream": stream})
    response.get_data()
    return response


def settle(app, count):
    portal = portal_of(app)
    deadline = time.monotonic() + 5
    while portal.dispatcher.delivered < count and time.monotonic() < deadline:
        time.sleep(0.01)
    portal.extensions["ledger"].writer.flush_once()


def usage(app, query="", user="root", role="admin", **headers):
    return app.test_client().get(f"/observability/usage?{query}", headers={**bearer(app, user, role), **headers})


def test_admin_sees_everyone_grouped_by_user_and_model(app):
    chat(app, "alice"), chat(app, "alice"), chat(app, "bob", stream=True)
    settle(app, 3)
    rows = usage(app, "group_by=user,model").json["data"]
    assert [(r["user"], r["model"], r["requests"], r["completion_tokens"]) for r in rows] == [
        ("alice", "echo", 2, 10), ("bob", "echo", 1, 5)]


def test_user_sees_only_their_own_usage(app):
    chat(app, "alice"), chat(app, "bob")
    settle(app, 2)
    mine = usage(app, "group_by=user", user="alice", role="user").json
    assert [r["user"] for r in mine["data"]] == ["alice"] and mine["query"]["user"] == "alice"
    assert usage(app, "user=bob", user="alice", role="user").status_code == 403
    assert usage(app, "user=bob").json["data"][0]["requests"] == 1


def test_usage_filters_by_backend_in_the_ledger(app):
    chat(app, "alice"), chat(app, "bob")
    settle(app, 2)
    assert usage(app, "group_by=backend&backend=fake").json["data"] == [
        {**usage(app, "group_by=backend").json["data"][0], "backend": "fake"}]
    assert usage(app, "group_by=backend&backend=fake").json["data"][0]["requests"] == 2
    assert sum(r["requests"] or 0 for r in usage(app, "backend=elsewhere").json["data"]) == 0
    assert usage(app, "backend=fake").json["query"]["backend"] == "fake"


@pytest.mark.parametrize("query,code", [
    ("from=yesterday", "invalid_time"),
    ("from=2026-11-10&to=2026-11-01", "invalid_range"),
    ("from=2020-01-01&to=2026-01-01", "range_too_long"),
    ("group_by=planet", "invalid_group_by"),
    ("group_by=day,hour", "invalid_group_by"),
    ("source=nowhere", "invalid_source"),
    ("format=xml", "invalid_format"),
    ("to=9999-12-31T23:59:59-12:00", "invalid_time"),
    ("to=0001-01-01T00:00:00", "invalid_range"),
])
def test_bad_usage_parameters_are_400(app, query, code):
    response = usage(app, query)
    assert response.status_code == 400
    assert response.json["error"]["code"] == code


def test_usage_as_csv_by_parameter_and_by_accept_header(app):
    chat(app, "alice")
    settle(app, 1)
    for response in (usage(app, "group_by=model&format=csv"), usage(app, "group_by=model", Accept="text/csv")):
        assert response.mimetype == "text/csv"
        rows = list(csv.DictReader(io.StringIO(response.data.decode())))
        assert rows[0]["source"] == "ledger" and rows[0]["model"] == "echo" and rows[0]["requests"] == "1"


def test_csv_cells_that_look_like_formulas_are_neutralised(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, models={"=HYPERLINK(\"http://x\")": {
        "backend": "fake", "model": "echo"}}))
    chat(app, "@evil", model='=HYPERLINK("http://x")')
    settle(app, 1)
    body = usage(app, "group_by=user,model&format=csv", role="admin").data.decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows[0]["user"] == "'@evil" and rows[0]["model"] == "'=HYPERLINK(\"http://x\")"


@pytest.mark.parametrize("value", ["\r=1+1", "\n=1+1", " =1+1", "\x00=cmd", "\u00a0+1", "\t@x", "-2+3"])
def test_a_cell_that_starts_a_formula_after_blanks_or_controls_is_text_too(value):
    from agent_portal.plugins.observability import csv_safe

    assert csv_safe(value) == "'" + value
    assert csv_safe("plain name") == "plain name" and csv_safe(12) == 12


class TwoProviders:
    @hookimpl
    def portal_usage_providers(self, portal):
        def broken(portal, query):
            raise ConnectionError("langfuse is down")

        def constant(portal, query):
            return [{"user": query.user, "requests": 42}]

        return [UsageProvider("broken", broken), UsageProvider("constant", constant)]


def test_source_all_isolates_a_failing_provider(app):
    portal_of(app).pm.register(TwoProviders(), name="two")
    chat(app, "alice")
    settle(app, 1)
    answer = usage(app, "source=all&user=alice").json["sources"]
    assert answer["broken"] == {"ok": False, "error": "ConnectionError: langfuse is down"}
    assert answer["constant"]["data"] == [{"user": "alice", "requests": 42}]
    assert answer["ledger"]["ok"] and answer["ledger"]["data"][0]["requests"] == 1
    single = usage(app, "source=broken")
    assert single.status_code == 502 and single.json["error"]["code"] == "source_failed"


class DownComponent:
    def __init__(self):
        self.calls = 0

    @hookimpl
    def portal_health_checks(self, portal):
        def down(portal):
            self.calls += 1
            return {"status": "down", "detail": "no route to host"}

        return [HealthCheck("langfuse", down, required=False)]


def test_health_reports_each_component_and_503_only_for_required(app, make_app, fake_upstream):
    portal_of(app).pm.register(DownComponent(), name="down")
    answer = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin"))
    assert answer.status_code == 200 and answer.json["status"] == "degraded"
    assert answer.json["components"]["langfuse"]["detail"] == "no route to host"
    assert answer.json["components"]["ledger"]["status"] == "up"

    strict = make_app(**{**chat_plugins(fake_upstream),
                         "observability": {"required": ["langfuse"], "health_cache_seconds": 0}})
    portal_of(strict).pm.register(DownComponent(), name="down")
    answer = strict.test_client().get("/observability/health", headers=bearer(strict, "root", "admin"))
    assert answer.status_code == 503 and answer.json["status"] == "down"


def test_health_is_cached_so_polling_cannot_hammer_upstreams(make_app, fake_upstream):
    app = make_app(**{**chat_plugins(fake_upstream), "observability": {"health_cache_seconds": 30}})
    component = DownComponent()
    portal_of(app).pm.register(component, name="down")
    for _ in range(5):
        app.test_client().get("/observability/health", headers=bearer(app, "root", "admin"))
    assert component.calls == 1


def test_health_and_models_are_admin_only(app):
    client = app.test_client()
    assert client.get("/observability/health", headers=bearer(app)).status_code == 403
    assert client.get("/observability/models", headers=bearer(app)).status_code == 403


def test_models_per_backend_with_reachability(app):
    answer = app.test_client().get("/observability/models", headers=bearer(app, "root", "admin")).json
    fake = next(b for b in answer["backends"] if b["backend"] == "fake")
    assert "echo" in fake["models"] and fake["reachable"] is True


def test_metrics_count_calls_tokens_and_upstream_errors(app):
    chat(app, "alice"), chat(app, "alice", model="reset-mid", stream=True)
    settle(app, 2)
    text = app.test_client().get("/metrics", headers=bearer(app, "root", "admin")).data.decode()
    assert 'portal_chat_requests_total{backend="fake",model="echo",outcome="ok"} 1.0' in text
    assert 'portal_chat_tokens_total{kind="completion",model="echo"} 5.0' in text
    assert 'portal_upstream_errors_total{kind="upstream_reset"} 1.0' in text
    assert "portal_chat_ttft_seconds_bucket" in text


def test_metrics_accept_a_scrape_token_only_on_metrics(make_app, fake_upstream):
    token = "scrape-token-5e0b1c9d7a2f48e6"
    app = make_app(**{**chat_plugins(fake_upstream), "metrics": {"scrape_token": token}})
    client = app.test_client()
    assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert client.get("/admin/keys", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/metrics", headers=bearer(app)).status_code == 403


def test_live_events_stream_each_completed_call(app, live_server):
    server = live_server(app)
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/events", headers=bearer(app, "root", "admin"))
    assert json.loads(ws.receive(timeout=5))["type"] == "hello"
    chat(app, "alice")
    event = json.loads(ws.receive(timeout=5))
    assert event["type"] == "call" and event["actor_id"] == "alice" and event["completion_tokens"] == 5
    assert "messages" not in event
    ws.close()


def test_live_events_accept_an_admin_token_in_the_first_message(app, live_server):
    server = live_server(app)
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/events")
    ws.send(json.dumps({"type": "auth", "token": bearer(app, "root", "admin")["Authorization"].split()[1]}))
    assert json.loads(ws.receive(timeout=5)) == {"type": "ready", "user": "root"}
    assert json.loads(ws.receive(timeout=5))["type"] == "hello"
    ws.close()


def test_live_events_close_1008_for_a_user_token_in_the_first_message(app, live_server):
    from simple_websocket import ConnectionClosed

    server = live_server(app)
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/events")
    ws.send(json.dumps({"type": "auth", "token": bearer(app)["Authorization"].split()[1]}))
    with pytest.raises(ConnectionClosed) as closed:
        ws.receive(timeout=5)
    assert closed.value.reason == 1008


def test_recent_calls_list_failures_for_admins(app):
    chat(app, "alice"), chat(app, "alice", model="reset-mid", stream=True)
    settle(app, 2)
    failed = app.test_client().get("/observability/calls?outcome=error", headers=bearer(app, "root", "admin")).json
    assert [c["outcome"] for c in failed["data"]] == ["upstream_reset"]
    assert app.test_client().get("/observability/calls", headers=bearer(app)).status_code == 403
    assert app.test_client().get("/observability/calls?limit=x", headers=bearer(app, "root", "admin")).status_code == 400


class BrokenListing:
    @hookimpl
    def portal_health_checks(self, portal):
        raise RuntimeError("config went missing")


def test_a_plugin_that_cannot_list_its_checks_shows_down_by_name(app):
    portal_of(app).pm.register(BrokenListing(), name="broken_listing")
    answer = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin"))
    component = answer.json["components"]["broken_listing"]
    assert component["status"] == "down" and "config went missing" in component["detail"]
    assert answer.status_code == 200  # not required: the stack is degraded, not down
