"""Rate limits and budgets: in-process, shared through the real Redis, and when Redis is gone."""
from __future__ import annotations

import time

import pytest

from agent_portal import ChatRecord, portal_of

from conftest import bearer, chat_plugins
from limits_calls import PRICED, chat, limited_app, settled

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
    app = limited_app(make_app, fake_upstream, roles={"user": {"tokens_per_minute": 30}})
    portal = portal_of(app)
    assert chat(app, stream=True, max_tokens=6).status_code == 200  # about 13 reserved, 7 + 5 once settled
    settled(portal, 1)
    assert chat(app, stream=True, max_tokens=6).status_code == 200  # 12 + 13 < 30 + 10 %: admitted; 24 settled
    settled(portal, 2)
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
    settled(portal_of(app), 3)
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
