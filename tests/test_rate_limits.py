"""Rate limits and budgets: in-process, shared through the real Redis, and when Redis is gone."""
from __future__ import annotations

import time

from agent_portal import ChatRecord, portal_of

from conftest import bearer, chat_plugins

HELLO = [{"role": "user", "content": "hi"}]


def chat(app, user="alice", model="echo", role="user", stream=False):
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app, user, role),
                                      json={"model": model, "messages": HELLO, "stream": stream})
    response.get_data()
    return response


def limited_app(make_app, fake_upstream, storage=None, **limits):
    section = {"roles": {"user": {"requests_per_minute": 3}}, **limits}
    if storage is not None:
        section["storage"] = storage
    return make_app(**chat_plugins(fake_upstream), rate_limits=section)


def test_requests_over_the_limit_get_429_with_retry_after(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream)
    before = len(fake_upstream.requests)
    answers = [chat(app) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    assert refused.json["error"]["code"] == "requests_per_minute"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert len(fake_upstream.requests) - before == 3  # refused calls never reach the upstream
    assert chat(app, user="bob").status_code == 200  # per user


def test_per_user_override_and_admin_role_defaults(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream, users={"vip": {"requests_per_minute": 10}},
                      roles={"user": {"requests_per_minute": 1}, "admin": {}})
    assert [chat(app, "vip").status_code for _ in range(4)] == [200] * 4
    assert [chat(app, "root", role="admin").status_code for _ in range(3)] == [200] * 3
    assert [chat(app, "joe").status_code for _ in range(2)] == [200, 429]


def test_streamed_tokens_count_against_tokens_per_minute(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream, roles={"user": {"tokens_per_minute": 20}})
    portal = portal_of(app)
    assert chat(app, stream=True).status_code == 200  # 7 + 5 tokens
    assert chat(app, stream=True).status_code == 200  # 24 counted once this one ends
    deadline = time.monotonic() + 3
    while portal.dispatcher.delivered < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = chat(app, stream=True)
    assert refused.status_code == 429 and refused.json["error"]["code"] == "tokens_per_minute"


def test_daily_budget_is_computed_from_the_ledger(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream, roles={"user": {"daily_budget_usd": 1.0}},
                      budget_cache_seconds=0)
    portal = portal_of(app)
    ledger = portal.extensions["ledger"]
    assert chat(app).status_code == 200
    ledger.writer.add({**_row(cost=1.25)})
    ledger.writer.flush_once()
    refused = chat(app)
    assert refused.status_code == 429 and refused.json["error"]["code"] == "daily_budget_usd"
    assert int(refused.headers["Retry-After"]) <= 86400


def _row(cost):
    from agent_portal.plugins.ledger import to_row

    return to_row(ChatRecord(request_id=f"seed-{time.monotonic_ns()}", actor_id="alice", actor_role="user",
                             model="echo", cost=cost))


def test_limits_endpoint_shows_own_remaining_and_admin_sees_anyone(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream)
    chat(app)
    mine = app.test_client().get("/observability/limits", headers=bearer(app)).json
    assert mine["user"] == "alice" and mine["storage"] == "memory"
    assert mine["limits"] == [{"scope": "user", "limit": "requests_per_minute", "value": 3,
                               "remaining": 2, "resets_at": mine["limits"][0]["resets_at"]}]
    client = app.test_client()
    assert client.get("/observability/limits?user=bob", headers=bearer(app)).status_code == 403
    other = client.get("/observability/limits?user=alice", headers=bearer(app, "root", "admin")).json
    assert other["limits"][0]["remaining"] == 2


# --- across workers and instances: the real Redis ---------------------------------------------


def test_two_apps_sharing_redis_allow_exactly_the_limit_together(make_app, fake_upstream, redis_url):
    first = limited_app(make_app, fake_upstream, storage=redis_url, roles={"user": {"requests_per_minute": 5}})
    second = limited_app(make_app, fake_upstream, storage=redis_url, roles={"user": {"requests_per_minute": 5}})
    statuses = [chat(app, user="shared").status_code for app in (first, second) * 6]
    assert statuses.count(200) == 5 and statuses.count(429) == 7


def test_redis_unreachable_fail_open_admits_and_counts(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream, storage="redis://127.0.0.1:1", on_storage_error="open")
    assert [chat(app).status_code for _ in range(5)] == [200] * 5
    limiter = portal_of(app).extensions["rate_limits"]
    assert limiter.storage_errors >= 5
    metrics = app.test_client().get("/metrics", headers=bearer(app, "root", "admin")).data.decode()
    assert 'portal_upstream_errors_total{kind="limit_storage"}' in metrics


def test_redis_unreachable_fail_closed_refuses_with_503(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream, storage="redis://127.0.0.1:1", on_storage_error="closed")
    before = len(fake_upstream.requests)
    response = chat(app)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "limit_store_unavailable"
    assert len(fake_upstream.requests) == before
