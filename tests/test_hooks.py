"""One test per hook, named after it (as datasette does): a small plugin implements the hook and the
test watches the portal use it. ``test_every_hook_has_a_test`` keeps the list complete."""
from __future__ import annotations

import json
import time

import pytest

from agent_portal import (Actor, ChatTarget, Command, Embed, HealthCheck, ModelInfo, PortalError, Route,
                          StartupError, UsageProvider, create_app, hookimpl, hookspecs, portal_of)
from agent_portal.upstream import OpenAIUpstream

from conftest import base_config, bearer, chat_plugins

HELLO = [{"role": "user", "content": "hi"}]
RECORDER_SECRET = "recorder-signing-secret-5f0c2a9e"


class Recorder:
    """A plugin implementing every hook, recording what the portal asked of it."""

    name = "recorder"

    def __init__(self, fake_upstream=None):
        self.fake = fake_upstream
        self.records = []
        self.shut_down = False
        self.refuse_model = None
        self.metrics = []

    @hookimpl
    def portal_commands(self):
        def configure(parser):
            parser.add_argument("--who", default="nobody")

        def run(args, load_portal):
            print(f"hello {args.who} from {sorted(load_portal().sources)[0]}")
            return 0

        return [Command("recorder-hello", "say hello", configure, run)]

    @hookimpl
    def portal_jwt_keys(self, portal):
        return {"recorder-issuer": RECORDER_SECRET}

    @hookimpl
    def portal_backends(self, portal):
        backend = portal.extensions.get("recorder-backend")
        return [backend] if backend is not None else []

    @hookimpl
    def portal_wants_payloads(self, portal):
        return True

    @hookimpl
    def portal_spend(self, portal, user, since):
        return 42.0 if user == "big-spender" else None

    @hookimpl
    def portal_recent_calls(self, portal, limit):
        return [{"call_id": "recorded", "limit": limit}]

    @hookimpl
    def portal_metric(self, portal, name, value, labels):
        self.metrics.append((name, value, labels))

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

    @hookimpl
    def portal_processes(self, portal):
        return [["recorder-hello", "--who", "the run command"]]


@pytest.fixture
def with_recorder(tmp_path, fake_upstream):
    recorder = Recorder(fake_upstream)

    def make(**sections):
        return create_app(base_config(tmp_path, **{**chat_plugins(fake_upstream), "embeds": {}, **sections}),
                          plugins=[recorder])

    return recorder, make


def wait_for_records(recorder, seconds=3.0):
    deadline = time.monotonic() + seconds
    while not recorder.records and time.monotonic() < deadline:
        time.sleep(0.01)


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
    wait_for_records(recorder)
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


def test_hook_portal_chat_target(make_app, fake_upstream):
    class Gate:
        name = "gate"

        @hookimpl(tryfirst=True)
        def portal_chat_target(self, portal, actor, model):
            if actor.id == "mallory":
                raise PortalError("Not for you.", status=403, code="model_forbidden")
            return None  # the chat plugin decides for everyone else

    sections = chat_plugins(fake_upstream, models={"staff": {"backend": "fake", "model": "echo", "roles": ["admin"]}})
    app = make_app(plugins=[Gate()], **sections)
    portal = portal_of(app)
    assert portal.hook.portal_chat_target(portal=portal, actor=Actor("ann", "admin", "t"), model="staff").model == "staff"
    for actor, model in ((Actor("mallory", "admin", "t"), "staff"), (Actor("bob", "user", "t"), "staff")):
        with pytest.raises(PortalError) as refused:
            portal.hook.portal_chat_target(portal=portal, actor=actor, model=model)
        assert refused.value.status == 403
    with pytest.raises(PortalError) as missing:
        portal.hook.portal_chat_target(portal=portal, actor=Actor("ann", "admin", "t"), model="nope")
    assert missing.value.status == 404


def test_hook_portal_chat_readmission(make_app):
    from agent_portal.metering import MeteredCall

    class Tight:
        name = "tight"
        asked = []

        @hookimpl
        def portal_chat_readmission(self, portal, estimate, prompt_tokens, cost):
            self.asked.append((estimate.prompt_tokens, prompt_tokens, cost))
            if estimate.prompt_tokens + prompt_tokens > 1000:
                raise PortalError("Too long for the budget.", status=429, code="tight")

    tight = Tight()
    app = make_app(plugins=[tight])
    portal = portal_of(app)
    backend = type("Backend", (), {"name": "work"})()
    call = MeteredCall(portal, Actor("sam", "user", "test"), model="work", backend=backend, upstream_model="work",
                       stream=False, request_id="r", prices=(0.01, None), reserve_completion_tokens=0,
                       estimated_prompt_tokens=100)
    call.admit()
    call.readmit(50)  # under the estimate: nobody is asked
    call.readmit(600)
    assert tight.asked == [(100, 500, pytest.approx(5.0))] and call.record.reservation.prompt_tokens == 600
    with pytest.raises(PortalError):
        call.readmit(2000)
    assert (call.record.outcome, call.record.status, call.record.cost) == ("refused", 429, 0)


def test_hook_portal_chat_completed(with_recorder):
    recorder, make = with_recorder
    app = make()
    chat(app, headers={**bearer(app, "sam"), "X-Request-ID": "hook-record-1"})
    wait_for_records(recorder)
    record = recorder.records[-1]
    assert (record.request_id, record.actor_id, record.model, record.completion_tokens) == \
        ("hook-record-1", "sam", "recorded-echo", 5)
    assert json.dumps(record.to_dict())


def test_hook_portal_embeds(with_recorder):
    _, make = with_recorder
    app = make()
    listed = app.test_client().get("/embeds", headers=bearer(app, "root", "admin")).json["data"]
    assert {"name": "recorded-ui", "title": "Recorded UI", "path": "/embed/recorded-ui/"} in listed


def test_hook_portal_commands(with_recorder, capsys, tmp_path):
    import yaml

    from agent_portal.cli import main

    recorder, _ = with_recorder
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path)))
    assert main(["recorder-hello", "--who", "rita", "--config", str(path)], plugins=[recorder]) == 0
    assert capsys.readouterr().out.strip() == "hello rita from portal_tokens"


def test_hook_portal_processes(with_recorder, tmp_path):
    import yaml

    from agent_portal.plugins.litellm.quickstart import companions

    recorder, _ = with_recorder
    path = tmp_path / "portal.yaml"
    config = base_config(tmp_path)
    path.write_text(yaml.safe_dump(config))
    assert companions(str(path), {}, plugins=[recorder]) == [["recorder-hello", "--who", "the run command"]]
    config["plugins"]["documents"] = {"store": {"path": str(tmp_path / "vectors")},
                                      "queue": {"path": str(tmp_path / "queue.db")}}
    path.write_text(yaml.safe_dump(config))
    assert sorted(companions(str(path), {}, plugins=[recorder])) == [["recorder-hello", "--who", "the run command"],
                                                                       ["worker"]]


def test_hook_portal_jwt_keys(with_recorder):
    import jwt

    from agent_portal.tokens import verify_jwt

    _, make = with_recorder
    app = make()
    assert portal_of(app).jwt_keys["recorder-issuer"] == RECORDER_SECRET
    token = jwt.encode({"id": "rita", "iss": "recorder-issuer", "iat": int(time.time()),
                        "exp": int(time.time()) + 60}, RECORDER_SECRET, algorithm="HS256")
    with app.app_context():
        assert verify_jwt(token)["id"] == "rita"


def test_hook_portal_backends(with_recorder):
    _, make = with_recorder
    app = make()
    chat(app)  # the recorder makes its backend on first use
    backends = app.test_client().get("/observability/models", headers=bearer(app, "root", "admin")).json
    recorder = next(b for b in backends["backends"] if b["backend"] == "recorder")
    assert "reachable" in recorder


def test_hook_portal_wants_payloads(with_recorder):
    recorder, make = with_recorder
    app = make()
    chat(app)
    wait_for_records(recorder)
    assert recorder.records[-1].messages == HELLO and recorder.records[-1].output


def test_hook_portal_spend(with_recorder):
    _, make = with_recorder
    app = make(rate_limits={"roles": {"user": {"daily_budget_usd": 10}}})
    refused = chat(app, headers=bearer(app, "big-spender"))
    assert refused.status_code == 429 and refused.json["error"]["code"] == "daily_budget_usd"
    assert chat(app, headers=bearer(app, "frugal")).status_code == 200


def test_hook_portal_recent_calls(with_recorder):
    _, make = with_recorder
    app = make()
    calls = app.test_client().get("/observability/calls?limit=7", headers=bearer(app, "root", "admin")).json
    assert calls["data"] == [{"call_id": "recorded", "limit": 7}]


def test_hook_portal_metric(with_recorder):
    recorder, make = with_recorder
    chat(make())  # the ledger's writer reports its figures once it has records
    deadline = time.monotonic() + 3
    while not any(m[0] == "ledger_queue_depth" for m in recorder.metrics) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ("ledger_queue_depth", 0, {}) in recorder.metrics


def test_an_implementation_may_ask_for_fewer_arguments_than_the_hook_offers(make_app, fake_upstream):
    class Terse:
        name = "terse"
        seen = []

        @hookimpl
        def portal_chat_admission(self, model):
            self.seen.append(model)

        @hookimpl
        def portal_health_checks(self):
            return [HealthCheck("terse", lambda portal: {"status": "up"})]

    terse = Terse()
    app = make_app(plugins=[terse], **chat_plugins(fake_upstream))
    assert chat(app, model="echo").status_code == 200 and terse.seen == ["echo"]
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    assert health["components"]["terse"]["status"] == "up"


def test_a_wrapper_around_a_chat_hook_sees_and_may_change_the_result(make_app, fake_upstream):
    from dataclasses import replace

    class Steering:
        name = "steering"
        wrapped = []

        @hookimpl(wrapper=True)
        def portal_chat_backend(self, portal, model):
            target = yield
            self.wrapped.append((model, target.upstream_model if target else None))
            if model == "echo" and target is not None:
                return replace(target, upstream_model="echo-ll")  # send it elsewhere
            return target

    steering = Steering()
    app = make_app(plugins=[steering], **chat_plugins(fake_upstream))
    assert chat(app, model="echo").status_code == 200
    assert ("echo", "echo") in steering.wrapped
    assert fake_upstream.requests[-1]["model"] == "echo-ll"


def test_a_wrapper_on_a_hook_called_one_implementation_at_a_time_is_refused_naming_the_plugin(make_app):
    class Watching:
        name = "watching"

        @hookimpl(wrapper=True)
        def portal_health_checks(self, portal):
            return (yield)

    with pytest.raises(StartupError, match="plugin 'watching' wraps portal_health_checks, which the core calls "
                                           "one implementation at a time"):
        make_app(plugins=[Watching()])


def test_every_hook_is_documented_with_its_signature():
    import inspect
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs/plugin_hooks.md").read_text()
    documented = dict(re.findall(r"^## (portal_\w+)(\(.*\))$", page, flags=re.M))
    hooks = {name: str(inspect.signature(getattr(hookspecs, name)))
             for name in dir(hookspecs) if name.startswith("portal_")}
    assert documented == hooks


def test_every_hook_has_a_test():
    hooks = {name for name in dir(hookspecs) if name.startswith("portal_")}
    tested = {name[len("test_hook_"):] for name in globals() if name.startswith("test_hook_")}
    assert hooks == tested, hooks ^ tested
