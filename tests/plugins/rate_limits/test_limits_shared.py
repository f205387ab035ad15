"""Rate limits and budgets shared by workers and instances through the real Redis, under
concurrency, and while the limit store goes away and comes back."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from agent_portal import ChatRecord, portal_of

from conftest import bearer, chat_plugins
from limits_calls import HELLO, PRICED, chat, limited_app, settled, wait_for


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


def test_closed_mode_health_says_degraded_with_its_mode_never_fails_the_check(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream, storage="redis://127.0.0.1:1", on_storage_error="closed")
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    limits = health["components"]["limits"]
    assert (limits["status"], limits["mode"]) == ("degraded", "closed") and "refused (503)" in limits["detail"]


def test_redis_unreachable_fail_closed_refuses_with_503(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream, storage="redis://127.0.0.1:1", on_storage_error="closed")
    before = len(fake_upstream.requests)
    response = chat(app)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "limit_store_unavailable"
    assert len(fake_upstream.requests) == before


# --- budgets and token limits under concurrency ----------------------------------------------------


def _concurrent_calls(servers, app, count):
    import requests
    from concurrent.futures import ThreadPoolExecutor

    headers = bearer(app, "spender")
    body = {"model": "metered", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}

    def one(i):
        return requests.post(servers[i % len(servers)].url + "/v1/chat/completions", json=body,
                             headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def _spent(apps, count):
    for app in apps:
        settled(portal_of(app), 0)
    deadline = time.monotonic() + 5
    total = lambda: sum(portal_of(a).dispatcher.delivered for a in apps)  # noqa: E731
    while total() < count and time.monotonic() < deadline:
        time.sleep(0.01)
    rows = []
    for app in apps:
        ledger = portal_of(app).extensions["ledger"]
        ledger.writer.flush_once()
        rows += [r for r in ledger.recent(100) if r["outcome"] == "ok"]
    return rows


def _budget_apps(make_app, fake_upstream, live_server, storage, limits, instances=1):
    apps = []
    for _ in range(instances):
        section = {"roles": {"user": limits}}
        if storage:
            section["storage"] = storage
        apps.append(make_app(**chat_plugins(fake_upstream, models=PRICED), rate_limits=section))
    return apps, [live_server(app) for app in apps]


def test_concurrent_calls_cannot_all_slip_under_one_daily_budget(make_app, fake_upstream, live_server):
    apps, servers = _budget_apps(make_app, fake_upstream, live_server, None, {"daily_budget_usd": 0.05})
    statuses = _concurrent_calls(servers, apps[0], 10)
    spent = sum(r["cost"] for r in _spent(apps, statuses.count(200)))
    one_call = 7 * 0.001 + 5 * 0.002
    assert statuses.count(429) >= 6
    assert spent <= 0.05 + one_call + 1e-9  # overshoot within one call


def test_concurrent_calls_cannot_all_slip_under_one_tokens_per_minute_limit(make_app, fake_upstream, live_server):
    apps, servers = _budget_apps(make_app, fake_upstream, live_server, None, {"tokens_per_minute": 50})
    statuses = _concurrent_calls(servers, apps[0], 10)
    used = sum(r["prompt_tokens"] + r["completion_tokens"] for r in _spent(apps, statuses.count(200)))
    assert statuses.count(429) >= 5 and used <= 50 + 12


def test_a_budget_shared_through_redis_holds_across_instances(make_app, fake_upstream, live_server, redis_url):
    apps, servers = _budget_apps(make_app, fake_upstream, live_server, redis_url,
                                 {"daily_budget_usd": 0.05}, instances=2)
    statuses = _concurrent_calls(servers, apps[0], 10)
    spent = sum(r["cost"] for r in _spent(apps, statuses.count(200)))
    assert statuses.count(429) >= 6 and spent <= 0.05 + 0.017 + 1e-9


# --- the limit store going away and coming back (a real Redis behind a proxy that can be cut) ------------


@pytest.fixture
def redis_proxy(redis_url):
    from tcp_proxy import CuttableProxy

    proxy = CuttableProxy(("127.0.0.1", 6379))
    yield proxy, f"redis://127.0.0.1:{proxy.port}/{redis_url.rsplit('/', 1)[1]}"
    proxy.close()


def _storeless_apps(make_app, fake_upstream, storage, count=2, **section):
    """Two workers of one deployment: the same config, so one ledger database."""
    import copy

    first = make_app(**chat_plugins(fake_upstream, models=PRICED),
                     rate_limits={"storage": storage, "roles": {"user": {"daily_budget_usd": 5.0}}, **section})
    return [first] + [make_app(config=copy.deepcopy(portal_of(first).config)) for _ in range(count - 1)]


def _metered(app, user="spender"):
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app, user),
                                      json={"model": "metered", "messages": HELLO, "max_tokens": 5})
    response.get_data()
    return response.status_code


def test_open_mode_lets_one_call_per_user_and_worker_through_while_the_store_is_away(make_app, fake_upstream,
                                                                                     redis_proxy, caplog):
    proxy, url = redis_proxy
    apps = _storeless_apps(make_app, fake_upstream, url)
    assert [_metered(app) for app in apps] == [200, 200]
    proxy.cut()
    with caplog.at_level("WARNING", logger="agent_portal.rate_limits"):
        codes = [_metered(app) for app in apps for _ in range(10)]
    assert codes.count(200) == 2 and codes.count(503) == 18  # README's bound: one call per user and worker
    assert _metered(apps[0], user="someone-else") == 200  # per user
    warnings = [r for r in caplog.records if r.name == "agent_portal.rate_limits" and r.levelname == "WARNING"]
    assert len(warnings) <= 2 and "call(s) met it" in warnings[0].getMessage()  # one per worker per 10 s
    health = apps[0].test_client().get("/observability/health", headers=bearer(apps[0], "root", "admin")).json
    limits = health["components"]["limits"]
    assert limits["status"] == "degraded" and limits["mode"] == "open" and limits["since"] <= time.time()
    assert "one call per user" in limits["detail"]
    proxy.restore()
    assert wait_for(lambda: _metered(apps[0], user="spender") == 200)
    health = apps[0].test_client().get("/observability/health", headers=bearer(apps[0], "root", "admin")).json
    assert health["components"]["limits"]["status"] == "up"


def test_after_redis_restarts_empty_the_counter_is_within_one_call_of_the_ledger(make_app, fake_upstream,
                                                                               redis_proxy, redis_url):
    import redis

    proxy, url = redis_proxy
    apps = _storeless_apps(make_app, fake_upstream, url)
    for _ in range(3):
        assert [_metered(app) for app in apps] == [200, 200]
    for app in apps:  # every worker's rows written (within ledger.flush_seconds in a deployment)
        settled(portal_of(app), 3)
        portal_of(app).extensions["ledger"].writer.flush_once()
    proxy.cut()
    redis.Redis.from_url(redis_url).flushdb()  # restarted with nothing
    proxy.restore()
    wait_for(lambda: _metered(apps[0]) == 200)
    for app in apps:
        settled(portal_of(app), 0)
    ledger_spend = 0.0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for app in apps:
            portal_of(app).extensions["ledger"].writer.flush_once()
        ledger_spend = sum(r["cost"] for r in portal_of(apps[0]).extensions["ledger"].recent(100)
                           if r["actor_id"] == "spender")  # one database for both workers
        if ledger_spend >= 7 * (7 * 0.001 + 5 * 0.002) - 1e-9:
            break
        time.sleep(0.05)
    limiter = portal_of(apps[0]).extensions["rate_limits"]
    counted = limiter.spend("spender", "daily_budget_usd")
    one_call = 7 * 0.001 + 5 * 0.002
    assert counted >= 0 and abs(counted - ledger_spend) <= one_call + 1e-9


def test_a_rebuilt_counter_counts_spend_still_waiting_in_the_ledgers_journal(make_app, fake_upstream, tmp_path):
    from agent_portal.plugins.ledger.schema import to_row

    app = make_app(**chat_plugins(fake_upstream, models=PRICED),
                   rate_limits={"roles": {"user": {"daily_budget_usd": 1.0}}})
    ledger = portal_of(app).extensions["ledger"]
    rows = [to_row(ChatRecord(request_id=f"j{i}", actor_id="alice", actor_role="user", model="echo", cost=0.3))
            for i in range(3)]
    ledger.writer.journal.append(rows[:2])  # what a database outage left on disk
    ledger.writer.queue.append((time.time(), rows[2]))  # and in memory, not yet written
    assert ledger.spend("alice", datetime.now(timezone.utc).replace(hour=0, minute=0, second=0,
                                                                     microsecond=0)) == pytest.approx(0.9)
    refused = chat(app, model="metered", max_tokens=150)  # 0.9 + this call's $0.31 estimate > 1.0 x 1.1
    assert refused.status_code == 429 and refused.json["error"]["code"] == "daily_budget_usd"


def test_the_limits_view_is_a_503_with_a_reason_when_redis_and_the_database_are_both_away(
        make_app, fake_upstream, redis_proxy, pg_url, tmp_path):
    from conftest import base_config
    from tcp_proxy import CuttableProxy

    proxy, url = redis_proxy
    database = CuttableProxy()
    try:
        config = base_config(tmp_path, **chat_plugins(fake_upstream),
                             rate_limits={"storage": url, "roles": {"user": {"daily_budget_usd": 5.0}}})
        config["portal"]["database_url"] = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{database.port}")
        app = make_app(config=config)
        client = app.test_client()
        assert client.get("/observability/limits", headers=bearer(app)).status_code == 200
        proxy.cut()
        database.cut()
        answer = client.get("/observability/limits", headers=bearer(app))
        assert answer.status_code == 503 and answer.json["error"]["code"] == "limit_store_unavailable"
        assert "ledger" in answer.json["error"]["message"]
    finally:
        database.close()
