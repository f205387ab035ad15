"""How the portal calls hooks: an implementation may take fewer arguments, a wrapper around a
chat hook sees and may change the answer, a wrapper where the core calls one implementation at a
time is refused, and every hook is documented with its signature."""
from __future__ import annotations

import pytest

from agent_portal import HealthCheck, StartupError, hookimpl, hookspecs

from conftest import ROOT, bearer, chat_plugins

HELLO = [{"role": "user", "content": "hi"}]


def chat(app, model="recorded-echo", headers=None):
    return app.test_client().post("/v1/chat/completions", json={"model": model, "messages": HELLO},
                                  headers=headers or bearer(app))


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

    page = (ROOT / "docs/plugin_hooks.md").read_text()
    documented = dict(re.findall(r"^## (portal_\w+)(\(.*\))$", page, flags=re.M))
    hooks = {name: str(inspect.signature(getattr(hookspecs, name)))
             for name in dir(hookspecs) if name.startswith("portal_")}
    assert documented == hooks
