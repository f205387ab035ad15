"""One test per hook, named after it (as datasette does): a small plugin implements the hook and the
test watches the portal use it. ``test_every_hook_has_a_test`` keeps the list complete."""
from __future__ import annotations

import json
import time

import pytest

from agent_portal import (Actor, ChatTarget, Embed, HealthCheck, ModelInfo, PortalError, Route,
                          StartupError, UsageProvider, create_app, hookimpl, hookspecs, portal_of)
from agent_portal.upstream import OpenAIUpstream

from conftest import base_config, bearer, chat_plugins

HELLO = [{"role": "user", "content": "hi"}]


class Recorder:
    """A plugin implementing every hook, recording what the portal asked of it."""

    def __init__(self, fake_upstream=None):
        self.fake = fake_upstream
        self.records = []
        self.shut_down = False
        self.refuse_model = None

    @hookimpl
    def portal_config_schema(self):
        return {"recorder": {"type": "object", "properties": {"greeting": {"type": "string", "default": "hi"}},
                             "additionalProperties": False}}

    @hookimpl
    def portal_startup(self, portal):
        if portal.plugin_config("recorder").get("greeting") == "refuse":
            raise StartupError("plugin 'recorder': plugins.recorder.greeting may not be 'refuse'")
        portal.extensions["recorder"] = self

    @hookimpl
    def portal_shutdown(self, portal):
        self.shut_down = True

    @hookimpl
    def portal_register_routes(self, portal):
        def greet():
            return {"greeting": portal.plugin_config("recorder")["greeting"]}
        return [Route("/recorder/greet", greet, access="user")]

    @hookimpl
    def portal_actor_from_request(self, portal, request):
        name = request.headers.get("X-Recorder-User")
        return Actor(id=name, role="user", via="recorder") if name else None

    @hookimpl
    def portal_health_checks(self, portal):
        return [HealthCheck("recorder", lambda portal: {"status": "up", "detail": "recording"})]

    @hookimpl
    def portal_usage_providers(self, portal):
        return [UsageProvider("recorder", lambda portal, query: [{"requests": len(self.records)}])]

    @hookimpl
    def portal_models(self, portal, actor):
        return [ModelInfo(id="recorded-echo", backend="recorder")]

    @hookimpl
    def portal_chat_backend(self, portal, model):
        if model != "recorded-echo" or self.fake is None:
            return None
        backend = portal.extensions.setdefault("recorder-backend", OpenAIUpstream(
            portal, "recorder", self.fake.base_url, models=["echo"]))
        return ChatTarget(model=model, backend=backend, upstream_model="echo")

    @hookimpl
    def portal_chat_admission(self, portal, actor, model):
        if model == self.refuse_model:
            raise PortalError("recorder says no", status=429, code="recorder_refused",
                              headers={"Retry-After": "7"})

    @hookimpl
    def portal_chat_completed(self, portal, record):
        self.records.append(record)

    @hookimpl
    def portal_embeds(self, portal):
        return [Embed("recorded-ui", "Recorded UI", "http://127.0.0.1:9")]


@pytest.fixture
def with_recorder(tmp_path, monkeypatch, fake_upstream):
    from agent_portal import plugin_manager

    original = plugin_manager.build_plugin_manager
    recorder = Recorder(fake_upstream)

    def build(config, *args):
        pm, sources = original(config, *args)
        pm.register(recorder, name="recorder")
        sources["recorder"] = "test"
        return pm, sources

    unknown = plugin_manager.unknown_plugin_errors

    def known_too(config, *args):  # the recorder is registered by hand, not installed
        return [e for e in unknown(config, *args) if "'recorder'" not in e]

    monkeypatch.setattr("agent_portal.app.build_plugin_manager", build)
    monkeypatch.setattr("agent_portal.app.unknown_plugin_errors", known_too)
    monkeypatch.setattr("agent_portal.plugin_manager.unknown_plugin_errors", known_too)

    def make(**sections):
        return create_app(base_config(tmp_path, **{**chat_plugins(fake_upstream), "embeds": {}, **sections}))

    return recorder, make


def chat(app, model="recorded-echo", headers=None):
    return app.test_client().post("/v1/chat/completions", json={"model": model, "messages": HELLO},
                                  headers=headers or bearer(app))


def test_hook_portal_config_schema(with_recorder):
    recorder, make = with_recorder
    with pytest.raises(StartupError, match=r"plugins\.recorder\.greeting"):
        make(recorder={"greeting": 5})
    app = make()
    assert portal_of(app).plugin_config("recorder")["greeting"] == "hi"  # its default filled in


def test_hook_portal_startup(with_recorder):
    recorder, make = with_recorder
    with pytest.raises(StartupError, match="may not be 'refuse'"):
        make(recorder={"greeting": "refuse"})
    assert portal_of(make()).extensions["recorder"] is recorder


def test_hook_portal_shutdown(with_recorder):
    recorder, make = with_recorder
    portal_of(make()).shutdown()
    assert recorder.shut_down


def test_hook_portal_register_routes(with_recorder):
    _, make = with_recorder
    app = make(recorder={"greeting": "hello"})
    assert app.test_client().get("/recorder/greet").status_code == 401
    assert app.test_client().get("/recorder/greet", headers=bearer(app)).json == {"greeting": "hello"}


def test_hook_portal_actor_from_request(with_recorder):
    _, make = with_recorder
    app = make()
    answer = app.test_client().get("/me", headers={"X-Recorder-User": "rita"})
    assert answer.json["user"] == "rita" and answer.json["via"] == "recorder"


def test_hook_portal_health_checks(with_recorder):
    _, make = with_recorder
    app = make()
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    assert health["components"]["recorder"]["detail"] == "recording"


def test_hook_portal_usage_providers(with_recorder):
    recorder, make = with_recorder
    app = make()
    chat(app)
    deadline = time.monotonic() + 3
    while not recorder.records and time.monotonic() < deadline:
        time.sleep(0.01)
    answer = app.test_client().get("/observability/usage?source=all", headers=bearer(app, "root", "admin")).json
    assert answer["sources"]["recorder"] == {"ok": True, "data": [{"requests": 1}]}


def test_hook_portal_models(with_recorder):
    _, make = with_recorder
    app = make()
    ids = {m["id"] for m in app.test_client().get("/v1/models", headers=bearer(app)).json["data"]}
    assert "recorded-echo" in ids


def test_hook_portal_chat_backend(with_recorder, fake_upstream):
    _, make = with_recorder
    app = make()
    answer = chat(app)
    assert answer.status_code == 200 and answer.json["model"] == "echo"
    assert fake_upstream.requests[-1]["model"] == "echo"


def test_hook_portal_chat_admission(with_recorder, fake_upstream):
    recorder, make = with_recorder
    app = make()
    recorder.refuse_model = "recorded-echo"
    before = len(fake_upstream.requests)
    answer = chat(app)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    assert answer.json["error"]["code"] == "recorder_refused"
    assert len(fake_upstream.requests) == before


def test_hook_portal_chat_completed(with_recorder):
    recorder, make = with_recorder
    app = make()
    chat(app, headers={**bearer(app, "sam"), "X-Request-ID": "hook-record-1"})
    deadline = time.monotonic() + 3
    while not recorder.records and time.monotonic() < deadline:
        time.sleep(0.01)
    record = recorder.records[-1]
    assert (record.request_id, record.actor_id, record.model, record.completion_tokens) == \
        ("hook-record-1", "sam", "recorded-echo", 5)
    assert json.dumps(record.to_dict())


def test_hook_portal_embeds(with_recorder):
    _, make = with_recorder
    app = make()
    listed = app.test_client().get("/embeds", headers=bearer(app, "root", "admin")).json["data"]
    assert {"name": "recorded-ui", "title": "Recorded UI", "path": "/embed/recorded-ui/"} in listed


def test_every_hook_has_a_test():
    hooks = {name for name in dir(hookspecs) if name.startswith("portal_")}
    tested = {name[len("test_hook_"):] for name in globals() if name.startswith("test_hook_")}
    assert hooks == tested, hooks ^ tested
