"""What the rate-limit tests share: a chat call, an app with limits, records settled, a wait."""
from __future__ import annotations

import time

from conftest import bearer, chat_plugins

HELLO = [{"role": "user", "content": "hi"}]
# a model slow enough that calls overlap, priced so that a few pass a small budget
PRICED = {"metered": {"backend": "fake", "model": "slow-200", "input_cost_per_token": 0.001,
                      "output_cost_per_token": 0.002}}


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


def settled(portal, count):
    deadline = time.monotonic() + 3
    while portal.dispatcher.delivered < count and time.monotonic() < deadline:
        time.sleep(0.01)


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
