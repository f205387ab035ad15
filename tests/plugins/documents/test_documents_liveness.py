"""No caller stalls a serving worker: the shipped setup (gunicorn, one gevent worker) beside a real
`agent-portal worker` process with the real embedder, while the embedder loads for the first
time, a large PDF and a page-bomb PDF are ingested, and a 100,000-character word is embedded and
counted. Meanwhile /ready, a chat and an open stream are watched from outside."""
from __future__ import annotations

import os
import threading
import time

import pytest
import requests
import yaml

from agent_portal import create_app, portal_of
from agent_portal.plugins.portal_tokens import mint_token

from documents_files import page_bomb_pdf, pdf
from conftest import free_port
from helpers import gunicorn_workers, start_job_worker, start_portal

pytestmark = pytest.mark.integration
LIMIT = 1.0  # seconds: the longest any watched call may wait


def documents_config(tmp_path, fake, **documents) -> dict:
    return {"portal": {"secret_key": "liveness-test-secret-0123456789abcdef", "log_level": "WARNING",
                       "database_url": f"sqlite:///{tmp_path}/portal.db"},
            "plugins": {"chat": {}, "portal_tokens": {}, "ledger": {"flush_seconds": 0.05},
                        "openai_compat": {"upstreams": {"fake": {"base_url": fake.base_url}}},
                        "documents": {"store": {"path": str(tmp_path / "vectors")},
                                      "queue": {"kind": "sqlite", "path": str(tmp_path / "queue.db")},
                                      "embedder": {"service_url": f"http://127.0.0.1:{free_port()}"},
                                      "answer_model": "echo", **documents}}}


class Watch:
    """From outside, in threads: /ready and a short chat in a loop, and streams one after
    another; the longest wait of each."""

    def __init__(self, base: str, headers: dict):
        self.base, self.headers = base, headers
        self.longest = {"ready": 0.0, "chat": 0.0, "stream gap": 0.0}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._probe, daemon=True),
                        threading.Thread(target=self._stream, daemon=True)]

    def _note(self, what: str, seconds: float):
        self.longest[what] = max(self.longest[what], seconds)

    def _probe(self):
        with requests.Session() as session:
            while not self.stop.is_set():
                started = time.monotonic()
                ready = session.get(self.base + "/ready", timeout=30)
                self._note("ready", time.monotonic() - started)
                started = time.monotonic()
                chat = session.post(self.base + "/v1/chat/completions", headers=self.headers, timeout=30,
                                    json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
                self._note("chat", time.monotonic() - started)
                if ready.status_code != 200 or chat.status_code != 200:
                    self.errors.append(f"ready {ready.status_code}, chat {chat.status_code}")
                time.sleep(0.05)

    def _stream(self):
        with requests.Session() as session:
            while not self.stop.is_set():
                body = {"model": "slow-20", "stream": True, "max_tokens": 150,
                        "messages": [{"role": "user", "content": "stream"}]}
                with session.post(self.base + "/v1/chat/completions", headers=self.headers, json=body,
                                  stream=True, timeout=30) as answer:
                    last = time.monotonic()
                    for _chunk in answer.iter_content(chunk_size=None):
                        now = time.monotonic()
                        self._note("stream gap", now - last)
                        last = now

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(40)


def test_uploads_bombs_and_long_words_never_stall_a_serving_worker(tmp_path, fake_upstream):
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(documents_config(tmp_path, fake_upstream, max_pages=500)))
    portal, base = start_portal(path, {}, workers=1)
    worker = start_job_worker(path, tmp_path / "worker.log")  # its model loads while the watch runs
    token = mint_token(portal_of(create_app(str(path))), "alice", "user")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        before = gunicorn_workers(portal.pid)
        collection = requests.post(base + "/documents/collections", json={"name": "manuals"}, headers=headers,
                                   timeout=10).json()["id"]
        pages = [f"Page {n}. " + " ".join(f"The pump model P{n}-{i} runs at {i * 7} litres a minute."
                                          for i in range(40)) for n in range(1, 61)]
        with Watch(base, headers) as watch:
            time.sleep(0.5)
            uploaded = requests.post(f"{base}/documents/collections/{collection}/files", headers=headers, timeout=30,
                                     files=[("file", ("manual.pdf", pdf(pages))),
                                            ("file", ("bomb.pdf", page_bomb_pdf(1000)))])
            assert uploaded.status_code == 202, uploaded.text
            word = "z" * 100_000
            embedded = requests.post(base + "/v1/embeddings", headers=headers, json={"input": word}, timeout=120)
            assert embedded.status_code == 200, embedded.text
            chat = requests.post(base + "/v1/chat/completions", headers=headers, timeout=30,
                                 json={"model": "echo", "messages": [{"role": "user", "content": word}]})
            assert chat.status_code == 200
            ids = [f["id"] for f in uploaded.json()["files"]]
            deadline = time.monotonic() + 240
            while True:
                states = {s["name"]: s for s in (requests.get(f"{base}/documents/files/{i}", headers=headers,
                                                              timeout=10).json() for i in ids)}
                if all(s["status"] in ("ready", "failed") for s in states.values()):
                    break
                assert time.monotonic() < deadline, states
                time.sleep(0.5)
            time.sleep(1)
        assert states["manual.pdf"]["status"] == "ready" and states["manual.pdf"]["pages"] == 60
        assert states["bomb.pdf"]["status"] == "failed" and "more than once" in states["bomb.pdf"]["error"]
        assert not watch.errors, watch.errors[:5]
        assert all(seconds < LIMIT for seconds in watch.longest.values()), watch.longest
        assert gunicorn_workers(portal.pid) == before  # no serving worker was killed and replaced
        # ingestion ran below the serving worker's CPU priority (documents.worker.nice, 10)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        print("longest waits while ingesting:", {k: round(v, 3) for k, v in watch.longest.items()})
    finally:
        for process in (worker, portal):
            process.terminate()
        for process in (worker, portal):
            process.wait(30)
