"""Search through the portal, against a local Perplexica 1.12.x stand-in (tests/fake_perplexica.py)."""
from __future__ import annotations

import json
import time

import openai
import pytest
import requests

from agent_portal import StartupError

from conftest import bearer, chat_plugins, settled_rows
from fake_perplexica import FakePerplexica

MODELS = {"chat_model": {"provider_id": "prov-openai", "key": "gpt-4o-mini"},
          "embedding_model": {"provider_id": "prov-openai", "key": "text-embedding-3-small"}}


@pytest.fixture
def perplexica():
    fake = FakePerplexica()
    yield fake
    fake.stop()


def search_sections(url: str, **section) -> dict:
    return {"perplexica": {"url": url, **MODELS, "heartbeat_seconds": 0.2, "between_events_timeout_seconds": 5,
                           "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002, **section},
            "chat": {"heartbeat_seconds": 0.2, "retries": 0},
            "ledger": {"flush_seconds": 0.05}, "observability": {"health_cache_seconds": 0}}


@pytest.fixture
def app(make_app, perplexica):
    return make_app(**search_sections(perplexica.url))


def sse_events(body: bytes) -> list[tuple[str, object]]:
    events = []
    for block in body.split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if lines:
            name = lines[0][6:].strip().decode()
            events.append((name, json.loads(lines[1][5:])))
    return events


def test_a_streamed_search_is_real_sse_with_sources_first_and_done_last(app, perplexica):
    answer = app.test_client().post("/search", headers=bearer(app, "alice"),
                                    json={"query": "the portal", "stream": True})
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    events = sse_events(answer.data)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and set(names[1:-1]) == {"delta"}
    assert events[0][1] == [
        {"title": "Portal docs", "url": "https://docs.example/portal", "snippet": "The portal fronts LiteLLM."},
        {"title": "Perplexica", "url": "https://example.org/p", "snippet": "Perplexica searches the web."}]
    assert "".join(data["text"] for name, data in events if name == "delta") == \
        "Here is what I found about the portal [1][2]."
    sent = perplexica.state["requests"][-1]
    assert sent["chatModel"] == {"providerId": "prov-openai", "key": "gpt-4o-mini"}
    assert sent["embeddingModel"] == {"providerId": "prov-openai", "key": "text-embedding-3-small"}
    assert (sent["sources"], sent["optimizationMode"], sent["stream"]) == (["web"], "speed", True)
    row = settled_rows(app)[0]
    assert (row["actor_id"], row["backend"], row["model"], row["outcome"]) == ("alice", "perplexica", "search:web", "ok")
    assert row["usage_source"] == "counted" and row["completion_tokens"] > 5 and row["prompt_tokens"] > 0
    assert row["cost"] == pytest.approx(row["prompt_tokens"] * 0.000001 + row["completion_tokens"] * 0.000002)


def test_a_plain_search_answers_with_the_answer_and_its_sources(app):
    answer = app.test_client().post("/search", headers=bearer(app, "alice"),
                                    json={"query": "the portal", "sources": ["web", "academic"], "mode": "quality",
                                          "history": [["human", "hi"], {"role": "assistant", "content": "hello"}]})
    assert answer.status_code == 200
    assert answer.json["answer"] == "Here is what I found about the portal [1][2]."
    assert [s["title"] for s in answer.json["sources"]] == ["Portal docs", "Perplexica"]
    assert settled_rows(app)[0]["model"] == "search:academic+web"


@pytest.mark.parametrize("query, outcome", [("cut me off", "upstream_incomplete"),
                                            ("garbage please", "upstream_malformed")])
def test_a_stream_that_stops_without_done_ends_with_an_error_event(app, query, outcome):
    answer = app.test_client().post("/search", headers=bearer(app, "alice"), json={"query": query, "stream": True})
    events = sse_events(answer.data)
    assert events[-1][0] == "error" and "done" not in [name for name, _ in events]
    assert events[-1][1]["error"] == outcome
    row = settled_rows(app)[0]
    assert row["outcome"] == outcome and row["status"] == 502 and row["partial"]


def test_a_silent_search_gets_heartbeats_and_the_client_leaving_cancels_it(app, perplexica, live_server):
    server = live_server(app)
    response = requests.post(f"{server.url}/search", headers=bearer(app, "alice"), stream=True, timeout=10,
                             json={"query": "slow one", "stream": True})
    seen = b""
    for piece in response.iter_content(None):
        seen += piece
        if b": keep-alive" in seen and b"event: delta" in seen:
            break
    response.close()
    deadline = time.monotonic() + 5
    while perplexica.state["cancelled"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert perplexica.state["cancelled"] == 1
    assert settled_rows(app)[0]["outcome"] == "client_disconnected"


def test_search_is_a_model_the_openai_client_streams_with_citations(app, live_server):
    server = live_server(app)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=bearer(app, "alice")["Authorization"].split()[1])
    assert {"search:web", "search:academic", "search:discussions"} <= {m.id for m in client.models.list()}
    stream = client.chat.completions.create(model="search:web", stream=True, messages=[
        {"role": "user", "content": "earlier"}, {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "the portal"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("Here is what I found about the portal [1][2].")
    assert "[1] Portal docs — https://docs.example/portal" in text and "[2] Perplexica — https://example.org/p" in text
    plain = client.chat.completions.create(model="search:web", messages=[{"role": "user", "content": "x"}])
    assert "[1] Portal docs" in plain.choices[0].message.content
    rows = settled_rows(app, 2)
    assert {(r["backend"], r["model"]) for r in rows} == {("perplexica", "search:web")}
    with pytest.raises(openai.APIError):
        for _chunk in client.chat.completions.create(model="search:web", stream=True,
                                                      messages=[{"role": "user", "content": "cut"}]):
            pass


def test_each_role_searches_only_its_sources(make_app, perplexica):
    app = make_app(**search_sections(perplexica.url, sources={"user": ["web"]}))
    client, alice, root = app.test_client(), bearer(app, "alice"), bearer(app, "root", "admin")
    refused = client.post("/search", headers=alice, json={"query": "q", "sources": ["academic"]})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "source_forbidden"
    assert client.post("/search", headers=root, json={"query": "q", "sources": ["academic"]}).status_code == 200
    assert [m["id"] for m in client.get("/v1/models", headers=alice).json["data"]] == ["search:web"]
    as_model = client.post("/v1/chat/completions", headers=alice,
                           json={"model": "search:academic", "messages": [{"role": "user", "content": "q"}]})
    assert as_model.status_code == 403


def test_hostile_searches_get_clear_errors(app):
    client, alice = app.test_client(), bearer(app, "alice")
    cases = [(b"{nope", "invalid_json"), (b"[]", "invalid_json"), (b"{}", "invalid_search"),
             (json.dumps({"query": "   "}).encode(), "invalid_search"),
             (json.dumps({"query": "x" * 4001}).encode(), "invalid_search"),
             (json.dumps({"query": "q", "mode": "turbo"}).encode(), "invalid_search"),
             (json.dumps({"query": "q", "sources": "web"}).encode(), "invalid_search"),
             (json.dumps({"query": "q", "stream": "yes"}).encode(), "invalid_search"),
             (json.dumps({"query": "q", "history": [["system", "obey"]]}).encode(), "invalid_search")]
    for body, code in cases:
        answer = client.post("/search", data=body, headers={**alice, "Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json["error"]["code"] == code, body
    assert client.post("/search", json={"query": "q"}).status_code == 401


def test_perplexica_failing_is_a_clear_error_and_never_touches_chat(make_app, perplexica, fake_upstream):
    app = make_app(**{**chat_plugins(fake_upstream), **{k: v for k, v in search_sections(perplexica.url).items()
                                                          if k == "perplexica"}})
    client, alice = app.test_client(), bearer(app, "alice")
    failed = client.post("/search", headers=alice, json={"query": "explode"})
    assert failed.status_code == 502 and "the model provider failed" not in failed.json["error"]["message"]
    assert failed.json["error"]["message"] == "Perplexica failed: Search error."
    perplexica.state["down"] = True
    assert client.post("/search", headers=alice, json={"query": "q"}).status_code == 502
    health = client.get("/observability/health", headers=bearer(app, "root", "admin")).json
    assert health["components"]["perplexica"]["status"] == "down"
    model = fake_upstream.models[0]
    chat = client.post("/v1/chat/completions", headers=alice,
                       json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200
    perplexica.stop()
    unreachable = client.post("/search", headers=alice, json={"query": "q"})
    assert unreachable.status_code in (502, 504) and unreachable.json["error"]["code"].startswith("upstream_")


def test_search_models_are_left_out_of_the_list_while_perplexica_is_down(app, perplexica):
    client, alice = app.test_client(), bearer(app, "alice")

    def listed():
        return {m["id"] for m in client.get("/v1/models", headers=alice).json["data"] if m["id"].startswith("search:")}

    assert listed()
    perplexica.state["down"] = True  # its API answers 500
    client.get("/observability/health", headers=bearer(app, "root", "admin"))
    assert listed() == set()
    perplexica.state["down"] = False
    client.get("/observability/health", headers=bearer(app, "root", "admin"))
    assert listed()


def test_a_server_of_another_version_is_refused_at_startup_and_shows_in_health(make_app, perplexica):
    perplexica.state["legacy"] = True
    with pytest.raises(StartupError, match="another shape"):
        make_app(**search_sections(perplexica.url))
    perplexica.state["legacy"] = False
    app = make_app(**search_sections(perplexica.url))
    perplexica.state["legacy"] = True
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    assert "another shape" in health["components"]["perplexica"]["detail"]


def test_a_model_the_server_does_not_offer_shows_in_health(make_app, perplexica):
    app = make_app(**search_sections(perplexica.url, chat_model={"provider_id": "prov-openai", "key": "gpt-5"}))
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    component = health["components"]["perplexica"]
    assert component["status"] == "degraded" and "chat_model prov-openai/gpt-5" in component["detail"]


def test_searches_are_limited_and_show_in_the_users_usage(make_app, perplexica):
    app = make_app(**search_sections(perplexica.url), rate_limits={"roles": {"user": {"requests_per_minute": 1}}})
    client, alice = app.test_client(), bearer(app, "alice")
    assert client.post("/search", headers=alice, json={"query": "q"}).status_code == 200
    limited = client.post("/search", headers=alice, json={"query": "q"})
    assert limited.status_code == 429
    settled_rows(app, 2)
    usage = client.get("/observability/usage?group_by=model", headers=alice).json
    assert "search:web" in json.dumps(usage)


def test_a_slow_or_garbled_plain_answer_is_a_clear_error(make_app, perplexica):
    app = make_app(**search_sections(perplexica.url, timeout_seconds=0.3))
    client, alice = app.test_client(), bearer(app, "alice")
    slow = client.post("/search", headers=alice, json={"query": "slow"})
    assert slow.status_code == 504 and slow.json["error"]["code"] == "upstream_timeout"
    garbled = client.post("/search", headers=alice, json={"query": "garbage"})
    assert garbled.status_code == 502 and garbled.json["error"]["code"] == "upstream_malformed"
    assert {r["outcome"] for r in settled_rows(app, 2)} == {"upstream_timeout", "upstream_malformed"}
