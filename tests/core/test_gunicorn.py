"""The portal as it runs in production: gunicorn, gevent workers, several of them."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests
import yaml

from agent_portal import create_app, portal_of
from agent_portal.plugins.portal_tokens import mint_token

from conftest import free_port
from helpers import start_portal

pytestmark = pytest.mark.integration
SCRAPE = "scrape-token-for-the-gunicorn-test"


@pytest.fixture
def served(tmp_path, fake_upstream):
    config = {"portal": {"secret_key": "gunicorn-test-secret-0123456789abcdef", "log_level": "WARNING",
                         "database_url": f"sqlite:///{tmp_path}/g.db"},
              "plugins": {"chat": {}, "portal_tokens": {}, "ledger": {"flush_seconds": 0.05},
                          "observability": {}, "metrics": {"scrape_token": SCRAPE},
                          "openai_compat": {"upstreams": {"fake": {"base_url": fake_upstream.base_url,
                                                                   "models": ["echo", "long"]}}}}}
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    process, base = start_portal(path, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                                        "PORTAL_GRACEFUL_SECONDS": "2"}, workers=2)
    token = mint_token(portal_of(create_app(str(path))), "gina", "user")
    yield base, {"Authorization": f"Bearer {token}"}
    process.terminate()
    process.wait(15)


def test_metrics_are_summed_over_gunicorn_workers(served):
    base, headers = served
    for i in range(12):
        with requests.Session() as session:  # a new connection each time, so both workers serve
            body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": bool(i % 2)}
            answer = session.post(base + "/v1/chat/completions", json=body, headers=headers, timeout=5)
            assert answer.status_code == 200 and answer.content
    deadline = time.monotonic() + 5
    total = 0.0
    while time.monotonic() < deadline:
        text = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {SCRAPE}"}, timeout=5).text
        total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("portal_chat_requests_total{"))
        if total == 12:
            break
        time.sleep(0.1)
    assert total == 12


def test_streams_flow_chunk_by_chunk_under_gevent(served):
    base, headers = served
    started = time.monotonic()
    arrivals = []
    with requests.post(base + "/v1/chat/completions", headers=headers, stream=True, timeout=10,
                       json={"model": "long", "messages": [{"role": "user", "content": "hi"}], "stream": True}) as r:
        assert r.headers["X-Accel-Buffering"] == "no"
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 102  # 100 chunks, the finish chunk, [DONE]
    # chunks arrive spread over the upstream's 5 seconds, not all at the end
    assert arrivals[10] < arrivals[-1] - 3


def test_sigterm_ends_open_streams_with_an_error_and_loses_no_record(tmp_path, fake_upstream):
    """``docker stop`` with streams open past graceful_timeout: each stream ends with an error
    event, never a clean end, and every record (those streams and all still queued) is stored."""
    import signal
    import threading

    import sqlalchemy as sa

    db = tmp_path / "shutdown.db"
    config = {"portal": {"secret_key": "gunicorn-test-secret-0123456789abcdef", "log_level": "WARNING",
                         "database_url": f"sqlite:///{db}"},
              "plugins": {"chat": {"between_chunks_timeout_seconds": 5}, "portal_tokens": {},
                          "ledger": {"flush_seconds": 60, "batch_size": 10000},
                          "openai_compat": {"upstreams": {"fake": {"base_url": fake_upstream.base_url,
                                                                   "models": ["echo", "slow-200"]}}}}}
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    process, base = start_portal(path, {"PORTAL_GRACEFUL_SECONDS": "4", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
                                 workers=1)
    try:
        headers = {"Authorization": f"Bearer {mint_token(portal_of(create_app(str(path))), 'sam', 'user')}"}
        hello = [{"role": "user", "content": "hi"}]
        for _ in range(20):  # queued in memory: the ledger flushes only every 60 s
            assert requests.post(base + "/v1/chat/completions", headers=headers, timeout=5,
                                 json={"model": "echo", "messages": hello}).status_code == 200
        endings = []

        def stream():
            with requests.post(base + "/v1/chat/completions", headers=headers, stream=True, timeout=30,
                               json={"model": "slow-200", "messages": hello, "stream": True,
                                     "max_tokens": 100}) as answer:
                lines = [line for line in answer.iter_lines() if line.startswith(b"data: ")]
            endings.append(lines[-1])

        streams = [threading.Thread(target=stream) for _ in range(3)]
        for thread in streams:
            thread.start()
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        for thread in streams:
            thread.join(20)
        process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
    assert len(endings) == 3
    for last in endings:
        assert b"[DONE]" not in last and b"portal_shutdown" in last
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT outcome, usage_source, completion_tokens FROM portal_chat_calls")).all()
    engine.dispose()
    assert len(rows) == 23
    cut = [r for r in rows if r[0] == "portal_shutdown"]
    assert len(cut) == 3 and all(r[1] == "counted" and r[2] > 0 for r in cut)


def test_ctrl_c_stops_serve_quickly_without_tracebacks(tmp_path):
    import signal

    config = {"portal": {"secret_key": "gunicorn-test-secret-0123456789abcdef", "log_level": "WARNING",
                         "database_url": f"sqlite:///{tmp_path}/c.db"}, "plugins": {"portal_tokens": {}}}
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "agent_portal.cli", "serve", "--config", str(path), "--port",
                                str(port), "--workers", "2"], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/ready", timeout=0.5).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group gets it
    started = time.monotonic()
    process.wait(15)
    assert time.monotonic() - started < 10
    log.seek(0)
    output = log.read()
    assert "Traceback" not in output and "SystemExit" not in output, output[-2000:]


def test_a_stray_module_beside_the_operator_does_not_shadow_a_library(tmp_path):
    for name in ("limits", "redis", "sqlalchemy"):
        (tmp_path / f"{name}.py").write_text(f"raise RuntimeError('the stray {name}.py was imported')\n")
    config = {"portal": {"secret_key": "gunicorn-test-secret-9c4e1a7b3f5d2e80", "log_level": "WARNING",
                         "database_url": f"sqlite:///{tmp_path}/s.db"},
              "plugins": {"portal_tokens": {}, "rate_limits": {"roles": {"user": {"requests_per_minute": 5}}},
                          "ledger": {}}}
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    process, base = start_portal(path, {}, workers=1, cwd=tmp_path)
    try:
        assert requests.get(base + "/ready", timeout=2).status_code == 200
    finally:
        process.terminate()
        process.wait(15)
