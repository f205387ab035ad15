"""What the Langfuse and Helicone tests share: a chat call through the portal and a wait."""
from __future__ import annotations

import time

from conftest import bearer

HELLO = [{"role": "user", "content": "hi"}]
RANGE = "from=2026-11-01&to=2026-11-05"


def chat(app, user="alice", model="echo-ll", stream=True, headers=None):
    response = app.test_client().post("/v1/chat/completions", headers={**bearer(app, user), **(headers or {})},
                                      json={"model": model, "messages": HELLO, "stream": stream})
    response.get_data()
    return response


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()
