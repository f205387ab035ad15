"""One test per hook, named after it (as datasette does): a small plugin implements the hook and the
test watches the portal use it. ``test_every_hook_has_a_test`` keeps the list complete."""
from __future__ import annotations

import json
import time

import pytest

from agent_portal import Actor, PortalError, StartupError, create_app, hookimpl, hookspecs, portal_of

from conftest import base_config, bearer, chat_plugins
from recorder_plugin import RECORDER_SECRET, Recorder

HELLO = [{"role": "user", "content": "hi"}]


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


def test_hook_portal_key_spend(with_recorder):
    recorder, make = with_recorder
    app = make(api_keys={}, rate_limits={})
    root = bearer(app, "root", "admin")
    created = app.test_client().post("/admin/keys", headers=root,
                                     json={"owner": "bob", "limits": {"daily_budget_usd": 10}}).json
    refused = chat(app, headers={"Authorization": f"Bearer {created['key']}"})
    assert refused.status_code == 429 and refused.json["error"]["code"] == "daily_budget_usd"
    assert recorder.key_spend_asked == [created["id"]]
    assert chat(app, headers=bearer(app, "bob")).status_code == 200  # bob's own budget is not the key's


def test_hook_portal_limits_set(with_recorder):
    recorder, make = with_recorder
    app = make(api_keys={}, rate_limits={})
    created = app.test_client().post("/admin/keys", headers=bearer(app, "root", "admin"),
                                     json={"owner": "bob", "limits": {"requests_per_minute": 7}}).json
    assert recorder.limits_set == [("keys", created["id"], {"requests_per_minute": 7}, "root")]
    listed = app.test_client().get("/admin/limits", headers=bearer(app, "root", "admin")).json["data"]
    assert {"scope": "keys", "id": created["id"], "limits": {"requests_per_minute": 7},
            "source": "runtime"}.items() <= listed[0].items()


def test_hook_portal_actor_groups(with_recorder):
    _, make = with_recorder
    app = make(rate_limits={"groups": {"recorded-team": {"requests_per_minute": 1}}})
    assert chat(app, headers=bearer(app, "team-ann")).status_code == 200
    refused = chat(app, headers=bearer(app, "team-ann"))
    assert refused.status_code == 429 and refused.json["error"]["code"] == "requests_per_minute"
    assert chat(app, headers=bearer(app, "solo")).status_code == 200
    assert chat(app, headers=bearer(app, "solo")).status_code == 200


def test_hook_portal_admin_change(with_recorder):
    recorder, make = with_recorder
    app = make(rate_limits={"users": {"ann": {"requests_per_minute": 5}}})
    client = app.test_client()
    assert client.put("/admin/limits/users/ann", headers=bearer(app, "root", "admin"),
                      json={"requests_per_minute": 9}).status_code == 200
    assert client.put("/admin/limits/users/ann", headers=bearer(app, "ann"), json={}).status_code == 403
    assert client.put("/admin/limits/nope/ann", headers=bearer(app, "root", "admin"), json={}).status_code == 404
    [change] = recorder.changes
    assert (change.actor, change.action, change.target) == ("root", "limits.put", "users/ann")
    assert (change.before, change.after) == ({"requests_per_minute": 5}, {"requests_per_minute": 9})


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


def test_every_hook_has_a_test():
    hooks = {name for name in dir(hookspecs) if name.startswith("portal_")}
    tested = {name[len("test_hook_"):] for name in globals() if name.startswith("test_hook_")}
    assert hooks == tested, hooks ^ tested
