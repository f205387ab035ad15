"""Rate limits and budgets: in-process, shared through the real Redis, and when Redis is gone."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from agent_portal import ChatRecord, portal_of

from conftest import bearer, chat_plugins

HELLO = [{"role": "user", "content": "hi"}]


def chat(app, user="alice", model="echo", role="user", stream=False, **body):
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app, user, role),
                                      json={"model": model, "messages": HELLO, "stream": stream, **body})
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


def _settled(portal, count):
    deadline = time.monotonic() + 3
    while portal.dispatcher.delivered < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_streamed_tokens_count_against_tokens_per_minute(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream, roles={"user": {"tokens_per_minute": 30}})
    portal = portal_of(app)
    assert chat(app, stream=True, max_tokens=6).status_code == 200  # about 13 reserved, 7 + 5 once settled
    _settled(portal, 1)
    assert chat(app, stream=True, max_tokens=6).status_code == 200  # 12 + 13 < 30 + 10 %: admitted; 24 settled
    _settled(portal, 2)
    refused = chat(app, stream=True, max_tokens=6)  # 24 + 13 would be past 33
    assert refused.status_code == 429 and refused.json["error"]["code"] == "tokens_per_minute"


def test_a_call_whose_own_estimate_would_run_far_past_a_limit_is_refused_up_front(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, models=PRICED),
                   rate_limits={"roles": {"user": {"daily_budget_usd": 0.05, "tokens_per_minute": 1000}}})
    huge = chat(app, model="metered", max_tokens=100_000)  # $200 of completion ceiling on a $0.05 budget
    assert huge.status_code == 429 and huge.json["error"]["code"] == "tokens_per_minute"
    assert "100" in huge.json["error"]["message"] and "max_tokens" in huge.json["error"]["message"]
    pricey = chat(app, model="metered", max_tokens=900)  # under the token limit, $1.8 on a $0.05 budget
    assert pricey.status_code == 429 and pricey.json["error"]["code"] == "daily_budget_usd"
    assert "may cost $1.8" in pricey.json["error"]["message"]
    assert chat(app, model="metered", max_tokens=5).status_code == 200  # a call that fits still goes
    rows = portal_of(app).extensions["ledger"]
    _settled(portal_of(app), 3)
    rows.writer.flush_once()
    assert sorted(r["outcome"] for r in rows.recent(10)) == ["ok", "refused", "refused"]


def test_overshoot_is_a_setting_and_zero_keeps_every_counter_at_its_limit(make_app, fake_upstream):
    from agent_portal import Actor, ChatEstimate
    from agent_portal.plugins.rate_limits.holds import LimitExceeded

    app = limited_app(make_app, fake_upstream, roles={"user": {"tokens_per_minute": 100}}, overshoot=0)
    limiter = portal_of(app).extensions["rate_limits"]
    alice = Actor("alice", "user", "test")
    limiter.admit(alice, ("echo",), ChatEstimate(60, 0, 0.0))
    with pytest.raises(LimitExceeded):
        limiter.admit(alice, ("echo",), ChatEstimate(41, 0, 0.0))
    limiter.admit(alice, ("echo",), ChatEstimate(40, 0, 0.0))
    assert limiter.status(alice)[0]["remaining"] == 0


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_a_counter_rebuilt_after_a_store_restart_counts_calls_under_way_and_never_goes_below_zero(
        make_app, fake_upstream, redis_url, storage):
    from agent_portal import Actor, ChatEstimate

    url = redis_url if storage == "redis" else None
    app = limited_app(make_app, fake_upstream, storage=url, roles={"user": {"tokens_per_minute": 1000,
                                                                           "daily_budget_usd": 5.0}})
    limiter = portal_of(app).extensions["rate_limits"]
    user = Actor(f"gen-{time.monotonic_ns()}", "user", "test")
    holds = limiter.admit(user, ("echo",), ChatEstimate(100, 200, 0.5))
    assert {h.counter for h in holds} == {"tokens", "spend"}
    for hold in holds:  # the store loses its data (a Redis restart) while the call is under way
        if storage == "redis":
            limiter.counters.client.delete("agent-portal:v2:" + hold.key)
        else:
            limiter.counters._values.pop(hold.key)
    fresh = limiter.admit(user, ("echo",), ChatEstimate(10, 0, 0.01))  # rebuilt: ledger + calls under way
    status = {entry["limit"]: entry for entry in limiter.status(user)}
    assert status["tokens_per_minute"]["remaining"] == 1000 - 300 - 10
    assert status["daily_budget_usd"]["spent_usd"] == pytest.approx(0.51)
    limiter.settle(holds, ChatRecord(request_id="r", actor_id=user.id, actor_role="user", model="echo",
                                     prompt_tokens=1, completion_tokens=1, cost=0.001))
    status = {entry["limit"]: entry for entry in limiter.status(user)}
    assert status["tokens_per_minute"]["remaining"] == 1000 - 2 - 10  # within one call of what was used
    assert status["daily_budget_usd"]["spent_usd"] == pytest.approx(0.011)
    limiter.settle(fresh, ChatRecord(request_id="r2", actor_id=user.id, actor_role="user", model="echo"))
    for hold in fresh:  # settled twice by mistake, or by a far smaller real figure: never below zero
        hold.settled = False
    limiter.settle(fresh, ChatRecord(request_id="r3", actor_id=user.id, actor_role="user", model="echo"))
    status = {entry["limit"]: entry for entry in limiter.status(user)}
    assert status["daily_budget_usd"]["spent_usd"] == 0 and status["tokens_per_minute"]["remaining"] == 1000


def test_a_hold_from_before_a_restart_that_the_new_counter_does_not_hold_settles_nothing(make_app, fake_upstream,
                                                                                        redis_url):
    from agent_portal import Actor, ChatEstimate

    one, two = (limited_app(make_app, fake_upstream, storage=redis_url,
                            roles={"user": {"daily_budget_usd": 5.0}}) for _ in range(2))
    first, second = (portal_of(app).extensions["rate_limits"] for app in (one, two))
    user = Actor(f"other-{time.monotonic_ns()}", "user", "test")
    holds = first.admit(user, ("echo",), ChatEstimate(100, 200, 0.5))  # a call under way on worker one
    first.counters.client.delete("agent-portal:v2:" + holds[0].key)  # Redis restarts empty
    second.admit(user, ("echo",), ChatEstimate(10, 0, 0.01))  # worker two rebuilds it (without one's call)
    first.settle(holds, ChatRecord(request_id="r", actor_id=user.id, actor_role="user", model="echo", cost=0.001))
    assert second.spend(user.id, "daily_budget_usd") == pytest.approx(0.01)  # not 0.01 - 0.499: never negative


def test_a_call_admitted_without_the_store_holds_nothing_to_settle(make_app, fake_upstream):
    from agent_portal import Actor, ChatEstimate

    app = limited_app(make_app, fake_upstream, storage="redis://127.0.0.1:1", on_storage_error="open",
                      roles={"user": {"tokens_per_minute": 1000, "daily_budget_usd": 5.0}})
    limiter = portal_of(app).extensions["rate_limits"]
    assert limiter.admit(Actor("alice", "user", "test"), ("echo",), ChatEstimate(100, 200, 0.5)) == []


def test_a_call_under_way_holds_its_token_estimate_until_it_ends(make_app, fake_upstream):
    import pytest

    from agent_portal import Actor, ChatEstimate
    from agent_portal.plugins.rate_limits.holds import LimitExceeded

    app = limited_app(make_app, fake_upstream, roles={"user": {"tokens_per_minute": 2000}})
    limiter = portal_of(app).extensions["rate_limits"]
    alice = Actor("alice", "user", "test")
    first = limiter.admit(alice, ("echo",), ChatEstimate(10, 1024, 0.0))
    assert limiter.status(alice)[0]["remaining"] == 2000 - 1034
    second = limiter.admit(alice, ("echo",), ChatEstimate(10, 1024, 0.0))  # 1034 < 2000: admitted
    with pytest.raises(LimitExceeded):
        limiter.admit(alice, ("echo",), ChatEstimate(10, 1024, 0.0))  # 2068 reserved: refused
    assert chat(app).status_code == 429  # a real call too, while the two are under way
    limiter.release(first + second)
    assert limiter.status(alice)[0]["remaining"] == 2000
    assert chat(app).status_code == 200


def test_daily_budget_starts_from_what_the_ledger_holds(make_app, fake_upstream):
    app = limited_app(make_app, fake_upstream, roles={"user": {"daily_budget_usd": 1.0}})
    ledger = portal_of(app).extensions["ledger"]
    ledger.writer.add({**_row(cost=1.25)})
    ledger.writer.flush_once()
    assert chat(app, user="bob").status_code == 200
    refused = chat(app)
    assert refused.status_code == 429 and refused.json["error"]["code"] == "daily_budget_usd"
    assert int(refused.headers["Retry-After"]) <= 86400


def _row(cost):
    from agent_portal.plugins.ledger.schema import to_row

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

PRICED = {"metered": {"backend": "fake", "model": "slow-200", "input_cost_per_token": 0.001,
                      "output_cost_per_token": 0.002}}


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
        _settled(portal_of(app), 0)
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
        _settled(portal_of(app), 3)
        portal_of(app).extensions["ledger"].writer.flush_once()
    proxy.cut()
    redis.Redis.from_url(redis_url).flushdb()  # restarted with nothing
    proxy.restore()
    wait_for(lambda: _metered(apps[0]) == 200)
    for app in apps:
        _settled(portal_of(app), 0)
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


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
