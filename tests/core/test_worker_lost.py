"""A serving worker that dies with calls open still leaves a row for each: the calls it admitted
are journaled, and the worker gunicorn starts in its place reports them as ``worker_lost``."""
from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest
import requests
import sqlalchemy as sa
import yaml

from agent_portal import ChatRecord, create_app, portal_of
from agent_portal.plugins.ledger.open_calls import OpenCalls
from agent_portal.plugins.portal_tokens import mint_token

from helpers import gunicorn_workers, start_portal

pytestmark = pytest.mark.integration


def test_a_serving_worker_killed_with_three_calls_open_leaves_three_worker_lost_rows(tmp_path, fake_upstream):
    config = {"portal": {"secret_key": "worker-lost-secret-0123456789abcdef", "log_level": "WARNING",
                         "database_url": f"sqlite:///{tmp_path}/portal.db"},
              "plugins": {"chat": {}, "portal_tokens": {}, "ledger": {"flush_seconds": 0.05},
                          "openai_compat": {"upstreams": {"fake": {"base_url": fake_upstream.base_url}}}}}
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    portal, base = start_portal(path, {}, workers=1)
    headers = {"Authorization": f"Bearer {mint_token(portal_of(create_app(str(path))), 'olga', 'user')}"}
    try:
        done = requests.post(base + "/v1/chat/completions", headers=headers, timeout=10,
                             json={"model": "echo", "messages": [{"role": "user", "content": "before"}]})
        assert done.status_code == 200
        [worker] = gunicorn_workers(portal.pid)
        streams, started = [], threading.Barrier(4)

        def open_stream(n):
            body = {"model": "slow-200", "stream": True, "max_tokens": 100,
                    "messages": [{"role": "user", "content": f"call {n} " + "word " * 300}]}
            with requests.post(base + "/v1/chat/completions", headers=headers, json=body, stream=True,
                               timeout=30) as answer:
                chunks = answer.iter_content(chunk_size=None)
                next(chunks)
                started.wait(10)
                try:
                    for _ in chunks:
                        pass
                except requests.RequestException:
                    pass

        for n in range(3):
            streams.append(threading.Thread(target=open_stream, args=(n,), daemon=True))
            streams[-1].start()
        started.wait(10)
        os.kill(worker, signal.SIGKILL)
        for thread in streams:
            thread.join(30)
        engine = sa.create_engine(f"sqlite:///{tmp_path}/portal.db")
        deadline = time.monotonic() + 20
        while True:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT call_id, actor_id, model, outcome, status, prompt_tokens, "
                                            "usage_source, stream FROM portal_chat_calls")).mappings().all()
            lost = [r for r in rows if r["outcome"] == "worker_lost"]
            if len(lost) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert gunicorn_workers(portal.pid) != {worker}  # gunicorn replaced the killed worker
        assert len(lost) == 3 and len({r["call_id"] for r in lost}) == 3, rows
        assert all((r["actor_id"], r["model"], r["status"], r["usage_source"], bool(r["stream"]))
                   == ("olga", "slow-200", 502, "estimated", True) for r in lost)
        assert all(r["prompt_tokens"] > 300 for r in lost)
        assert [r["outcome"] for r in rows].count("ok") == 1
    finally:
        portal.terminate()
        portal.wait(20)


def test_open_calls_of_a_live_process_are_left_alone_and_ended_calls_are_not_reported(tmp_path):
    target = SimpleNamespace(backend=SimpleNamespace(name="fake"), upstream_model="echo", input_cost_per_token=0.001)

    def record(n):
        return ChatRecord(request_id=f"r{n}", actor_id="olga", actor_role="user", model="echo", stream=True)

    dying, other = OpenCalls(str(tmp_path)), OpenCalls(str(tmp_path))
    marks = [dying.opened(record(n), target, 100) for n in range(3000)]  # past COMPACT_BYTES: rewritten
    for mark in marks[:-2]:
        dying.closed(mark)
    assert other.recover() == []  # its process is alive: its calls are its own
    os.close(dying._fd)  # the process dies: its lock goes, its file stays
    lost = other.recover()
    assert sorted(r.call_id for r in lost) == sorted(m.call_id for m in marks[-2:])
    assert {(r.outcome, r.status, r.prompt_tokens, r.cost, r.backend) for r in lost} == {("worker_lost", 502, 100, 0.1, "fake")}
    assert other.recover() == [] and os.listdir(tmp_path) == []


def test_many_calls_open_at_once_are_not_rewritten_at_every_admission(tmp_path, monkeypatch):
    target = SimpleNamespace(backend=SimpleNamespace(name="fake"), upstream_model="echo", input_cost_per_token=None)
    journal, rewrites = OpenCalls(str(tmp_path)), []
    compact = journal._compact
    monkeypatch.setattr(journal, "_compact", lambda: (rewrites.append(1), compact()))
    marks = [journal.opened(ChatRecord(request_id="r", actor_id="olga", actor_role="user", model="echo"), target, 9)
             for _ in range(10_000)]  # about 3 MB of open calls: past COMPACT_BYTES on their own
    assert rewrites == []
    for mark in marks:
        journal.closed(mark)
    assert len(rewrites) <= 2 and os.path.getsize(journal._path) < 1024 * 1024
