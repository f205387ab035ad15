"""Failover that finishes the answer: each upstream fault, what the caller gets, what the ledger
says, and how long it took. Every model here has one fallback (``echo`` unless a test says)."""
from __future__ import annotations

import json
import time

import pytest

from agent_portal import portal_of

from conftest import bearer, chat_plugins, settled_rows

HELLO = [{"role": "user", "content": "hello"}]
FULL = "tok0 tok1 tok2 tok3 tok4 "


def failover_app(make_app, fake, primaries, fallback="echo", **chat):
    models = {f"m-{p}": {"backend": "fake", "model": p, "fallbacks": [f"fb-{p}"]} for p in primaries}
    models.update({f"fb-{p}": {"backend": "fake", "model": fallback} for p in primaries})
    settings = {"first_byte_timeout_seconds": 1.0, "between_chunks_timeout_seconds": 1.0, "retries": 1,
                "retry_max_wait_seconds": 0.2, "call_budget_seconds": 20, "heartbeat_seconds": 0.3, **chat}
    return make_app(**chat_plugins(fake, models=models, **settings))


def ask(app, model, stream=True, user="alice"):
    started = time.monotonic()
    response = app.test_client().post("/v1/chat/completions", headers=bearer(app, user),
                                      json={"model": model, "messages": HELLO, "stream": stream})
    body = response.get_data()
    return response, body, time.monotonic() - started


def streamed_text(body: bytes) -> tuple[str, list]:
    events = [e[6:] for e in body.decode().split("\n\n") if e.startswith("data: ")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in map(json.loads, events[:-1] if
                   events and events[-1] == "[DONE]" else events) if c.get("choices"))
    return text, events


def sent_models(fake, since: int) -> list[str]:
    return [r.get("model") for r in fake.requests[since:]]


@pytest.mark.parametrize("primary, tries_of_primary", [
    ("status-503", 2),        # 5xx: the same target again, then the next
    ("reset-before", 2),      # a reset before any byte: the same again, then the next
    ("status-429", 2),        # 429 with Retry-After: 0 (within the wait budget): the same again
    ("status-429-ms", 2),     # 429 with OpenAI's retry-after-ms: 0: the same again
    ("status-429-bare", 1),   # 429 without Retry-After: the next at once
    ("status-429-long", 1),   # asking to wait 30 s: the next at once
    ("hang-before", 1),       # no answer: a timeout is not a reason to ask again
    ("slow-first-1500", 1),   # a first token slower than first_token_timeout: the next
    ("ctx-exceeded", 1),      # context length exceeded: the fallback may have a larger window
])
@pytest.mark.parametrize("stream", [True, False])
def test_a_failure_before_the_first_byte_goes_to_the_fallback_which_answers(make_app, fake_upstream, primary,
                                                                            tries_of_primary, stream):
    app = failover_app(make_app, fake_upstream, [primary])
    before = len(fake_upstream.requests)
    response, body, took = ask(app, f"m-{primary}", stream)
    assert response.status_code == 200, body
    text = streamed_text(body)[0] if stream else json.loads(body)["choices"][0]["message"]["content"] + " "
    assert text == FULL
    assert sent_models(fake_upstream, before) == [primary] * tries_of_primary + ["echo"]
    assert took < 4.0  # never 30 s of hanging, nor a retried timeout
    row = settled_rows(app)[0]
    assert (row["outcome"], row["backend"], row["upstream_model"]) == ("ok", "fake", "echo")


def test_a_role_chunk_followed_by_silence_trips_the_first_token_limit(make_app, fake_upstream):
    app = failover_app(make_app, fake_upstream, ["role-stall"], first_token_timeout_seconds=1.0,
                       between_chunks_timeout_seconds=30)
    before = len(fake_upstream.requests)
    response, body, took = ask(app, "m-role-stall")
    text, events = streamed_text(body)
    assert text == FULL and events[-1] == "[DONE]"
    assert sent_models(fake_upstream, before) == ["role-stall", "echo"]
    assert took < 4.0  # the first-token limit (1 s), not the stall limit (30 s)
    row = settled_rows(app)[0]
    assert (row["outcome"], row["upstream_model"]) == ("ok", "echo")


def test_the_callers_own_bad_request_and_a_content_filter_are_never_retried(make_app, fake_upstream):
    app = failover_app(make_app, fake_upstream, ["content-filter", "status-400"])
    for primary in ("content-filter", "status-400"):
        before = len(fake_upstream.requests)
        response, body, _ = ask(app, f"m-{primary}")
        assert response.status_code == 400
        assert sent_models(fake_upstream, before) == [primary]


@pytest.mark.parametrize("primary, first_part", [("reset-mid", "upstream_reset"), ("stall-mid", "upstream_stalled"),
                                                 ("garbage-mid", "upstream_malformed"),
                                                 ("error-mid", "upstream_error")])
def test_a_stream_cut_mid_answer_is_finished_by_the_fallback_exactly_once(make_app, fake_upstream, primary,
                                                                        first_part):
    app = failover_app(make_app, fake_upstream, [primary])
    before = len(fake_upstream.requests)
    response, body, took = ask(app, f"m-{primary}")
    text, events = streamed_text(body)
    assert text == FULL and events[-1] == "[DONE]"  # no text lost, none twice
    continuation = fake_upstream.requests[before:][-1]
    assert continuation["model"] == "echo"
    assert continuation["messages"][-1] == {"role": "assistant", "content": "tok0 tok1 "}
    assert took < 5.0
    row = settled_rows(app)[0]
    assert row["outcome"] == "ok" and row["partial"] is False
    served = json.loads(row["served_by"])
    assert [(p["model"], p.get("outcome")) for p in served] == [(primary, first_part), ("echo", None)]
    assert served[1]["completion_tokens"] == 3 and served[0]["completion_tokens"] > 0
    assert row["completion_tokens"] == sum(p["completion_tokens"] for p in served)
    assert row["prompt_tokens"] == sum(p["prompt_tokens"] for p in served)


def test_a_stall_that_keeps_the_socket_open_is_cut_in_time_for_the_fallback_to_finish_in_the_budget(
        make_app, fake_upstream):
    app = failover_app(make_app, fake_upstream, ["stall-mid"], between_chunks_timeout_seconds=60,
                       call_budget_seconds=6)
    response, body, took = ask(app, "m-stall-mid")
    text, events = streamed_text(body)
    assert text == FULL and events[-1] == "[DONE]"
    assert took < 6.0  # the stall was cut at half of what the budget left, not after 60 s (nor 30)


def test_a_fallback_that_refuses_to_continue_ends_with_an_error_event_never_a_clean_end(make_app, fake_upstream):
    app = failover_app(make_app, fake_upstream, ["reset-mid"], fallback="no-prefill")
    response, body, _ = ask(app, "m-reset-mid")
    text, events = streamed_text(body)
    assert text == "tok0 tok1 " and "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert "prefill" in error["message"]
    row = settled_rows(app)[0]
    assert row["outcome"] == "upstream_reset" and row["partial"] is True
    counter = portal_of(app).token_counter
    assert row["served_by"] is None  # one target served it: its partial answer is counted once
    assert row["completion_tokens"] == counter.count_text("reset-mid", "tok0 tok1 ")


def test_a_fallback_refusing_the_prefill_in_its_own_words_passes_the_answer_to_the_next(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, between_chunks_timeout_seconds=1.0, models={
        "m": {"backend": "fake", "model": "reset-mid", "fallbacks": ["odd", "fine"]},
        "odd": {"backend": "fake", "model": "odd-prefill"}, "fine": {"backend": "fake", "model": "echo"}}))
    before = len(fake_upstream.requests)
    response, body, _ = ask(app, "m")
    text, events = streamed_text(body)
    assert text == FULL and events[-1] == "[DONE]"
    assert sent_models(fake_upstream, before) == ["reset-mid", "odd-prefill", "echo"]
    catalog = {m["model"]: m for m in app.test_client().get("/admin/models",
                                                            headers=bearer(app, "root", "admin")).json["data"]}
    assert catalog["odd"]["supports_prefill"] is False and catalog["fine"]["supports_prefill"] is None
    before = len(fake_upstream.requests)
    ask(app, "m")  # learned: the next continuation skips the model that refused
    assert sent_models(fake_upstream, before) == ["reset-mid", "echo"]


def test_when_every_fallback_refuses_the_prefill_the_stream_ends_continuation_refused(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, models={
        "m": {"backend": "fake", "model": "reset-mid", "fallbacks": ["odd", "plain-no"]},
        "odd": {"backend": "fake", "model": "odd-prefill"}, "plain-no": {"backend": "fake", "model": "no-prefill"}}))
    response, body, _ = ask(app, "m")
    text, events = streamed_text(body)
    assert text == "tok0 tok1 " and "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "continuation_refused"


def test_a_model_marked_without_prefill_never_receives_a_continuation(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, models={
        "m": {"backend": "fake", "model": "reset-mid", "fallbacks": ["fb"]},
        "fb": {"backend": "fake", "model": "echo", "supports_prefill": False}}))
    before = len(fake_upstream.requests)
    response, body, took = ask(app, "m")
    text, events = streamed_text(body)
    assert text == "tok0 tok1 " and json.loads(events[-1])["error"]["code"] == "continuation_unavailable"
    assert sent_models(fake_upstream, before) == ["reset-mid"] and took < 2.0
    assert ask(app, "fb")[0].status_code == 200  # it still answers calls of its own


@pytest.mark.parametrize("model", ["reset-mid", "error-mid"])
def test_without_a_fallback_a_cut_stream_still_ends_with_an_error_event(make_app, fake_upstream, model):
    app = make_app(**chat_plugins(fake_upstream))
    response, body, _ = ask(app, model)
    text, events = streamed_text(body)
    assert text == "tok0 tok1 " and "[DONE]" not in events and "error" in events[-1]
    if model == "error-mid":  # the upstream's own words reach the caller, in one error event
        assert "upstream stream broke" in json.loads(events[-1])["error"]["message"]
        assert sum("error" in json.loads(e) for e in events) == 1


def test_continuation_can_be_switched_off_per_model(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, models={
        "m": {"backend": "fake", "model": "reset-mid", "fallbacks": ["fb"], "continue_on_failure": False},
        "fb": {"backend": "fake", "model": "echo"}}))
    response, body, _ = ask(app, "m")
    assert "error" in streamed_text(body)[1][-1]


def test_a_whole_answer_without_done_is_complete(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream))
    response, body, _ = ask(app, "no-done")
    text, events = streamed_text(body)
    assert text == FULL and events[-1] == "[DONE]"
    assert settled_rows(app)[0]["outcome"] == "ok"


def test_an_isolated_malformed_chunk_is_skipped_and_counted(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream))
    response, body, _ = ask(app, "malformed-mid")
    text, events = streamed_text(body)
    assert text == "tok0 tok1 tok3 tok4 " and events[-1] == "[DONE]"
    row = settled_rows(app)[0]
    assert row["outcome"] == "ok" and row["skipped_chunks"] == 1


def test_a_stream_that_never_recovers_from_malformed_chunks_ends_with_an_error(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream))
    response, body, _ = ask(app, "garbage-mid")
    events = streamed_text(body)[1]
    assert "[DONE]" not in events and json.loads(events[-1])["error"]["code"] == "upstream_malformed"


def test_a_flapping_primary_is_skipped_by_its_circuit_then_probed(make_app, fake_upstream):
    app = failover_app(make_app, fake_upstream, ["status-503"], retries=0,
                       circuit_breaker={"failures": 2, "cooloff_seconds": 0.5})
    before = len(fake_upstream.requests)
    for _ in range(6):
        response, body, _ = ask(app, "m-status-503")
        assert response.status_code == 200
    assert sent_models(fake_upstream, before).count("status-503") == 2  # then its circuit opened
    circuits = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    assert circuits["components"]["circuits"]["targets"]["fake/status-503"]["state"] == "open"
    time.sleep(0.6)
    probe_before = len(fake_upstream.requests)
    ask(app, "m-status-503")
    assert sent_models(fake_upstream, probe_before) == ["status-503", "echo"]  # one probe, still failing


def test_the_circuit_is_shared_through_redis(make_app, fake_upstream, redis_url, tmp_path):
    first = failover_app(make_app, fake_upstream, ["status-503"], retries=0,
                         circuit_breaker={"failures": 2, "cooloff_seconds": 30})
    config = {"portal": {**portal_of(first).config["portal"], "redis_url": redis_url}, "plugins":
              portal_of(first).config["plugins"]}
    one, two = make_app(config=config), make_app(config=json.loads(json.dumps(config)))
    before = len(fake_upstream.requests)
    ask(one, "m-status-503")
    ask(one, "m-status-503")
    ask(two, "m-status-503")
    assert sent_models(fake_upstream, before).count("status-503") == 2  # the second app saw the open circuit


def test_the_circuit_keeps_skipping_a_dead_upstream_while_redis_is_away_and_after_it_returns_empty(
        make_app, fake_upstream, redis_url, tmp_path):
    import redis

    from tcp_proxy import CuttableProxy

    proxy = CuttableProxy(("127.0.0.1", 6379))
    base = failover_app(make_app, fake_upstream, ["status-503"], retries=0,
                        circuit_breaker={"failures": 2, "cooloff_seconds": 30})
    db = redis_url.rsplit("/", 1)[1]
    config = {"portal": {**portal_of(base).config["portal"], "redis_url": f"redis://127.0.0.1:{proxy.port}/{db}"},
              "plugins": portal_of(base).config["plugins"]}
    app = make_app(config=config)
    breaker = portal_of(app).extensions["chat"].breaker
    redis.Redis.from_url(redis_url).delete("ap:circuit:fake/status-503")
    proxy.cut()  # Redis away
    before = len(fake_upstream.requests)
    for _ in range(6):
        response, body, _ = ask(app, "m-status-503")
        assert response.status_code == 200
    assert sent_models(fake_upstream, before).count("status-503") == 2  # then this worker's own circuit opened
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    circuits = health["components"]["circuits"]
    assert circuits["status"] == "degraded" and "unavailable" in circuits["detail"]
    assert circuits["targets"]["fake/status-503"]["state"] == "open"
    assert breaker.outage.failures >= 6
    proxy.restore()  # Redis back, with nothing of the circuit (a restart)
    redis.Redis.from_url(redis_url).delete("ap:circuit:fake/status-503")
    after = len(fake_upstream.requests)
    for _ in range(3):
        ask(app, "m-status-503")
    assert sent_models(fake_upstream, after).count("status-503") == 0
    assert float(redis.Redis.from_url(redis_url).hget("ap:circuit:fake/status-503", "open_until")) > 0  # put back
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    assert health["components"]["circuits"]["targets"]["fake/status-503"]["state"] == "open"
    assert "every circuit closed" not in health["components"]["circuits"]["detail"]


def test_a_probe_that_closes_the_circuit_in_one_worker_closes_it_for_the_others(make_app, fake_upstream,
                                                                                 redis_url):
    base = failover_app(make_app, fake_upstream, ["status-503"], retries=0,
                        circuit_breaker={"failures": 1, "cooloff_seconds": 30})
    config = {"portal": {**portal_of(base).config["portal"], "redis_url": redis_url},
              "plugins": portal_of(base).config["plugins"]}
    one, two = make_app(config=config), make_app(config=json.loads(json.dumps(config)))
    target = type("T", (), {"backend": type("B", (), {"name": "fake"})(), "upstream_model": "flaky-model"})()
    first, second = portal_of(one).extensions["chat"].breaker, portal_of(two).extensions["chat"].breaker
    first.success(target)
    first.failure(target)  # opened, in Redis and in worker one
    assert not second.allow(target) and not first.allow(target)
    second.success(target)  # worker two's probe got through
    assert first.allow(target)  # worker one does not put its stale opening back


def test_the_call_budget_ends_a_call_that_waits_too_long(make_app, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream, models={
        "m": {"backend": "fake", "model": "hang-before", "fallbacks": ["fb"]},
        "fb": {"backend": "fake", "model": "hang-before"}},
        first_byte_timeout_seconds=5, call_budget_seconds=1.5))
    response, body, took = ask(app, "m", stream=False)
    assert response.status_code == 504 and took < 3.0
    assert json.loads(body)["error"]["code"] in ("call_budget_exceeded", "upstream_timeout")
