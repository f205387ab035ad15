"""The documents tests' worker and helpers: a job worker (the real `agent-portal worker` parts,
huey's consumer, the embedding service and the reaper, run in this process with a portal of their
own built from the same config as the app under test, as a worker process builds one), the
``with_worker`` fixture (conftest loads this module as a pytest plugin), the sections of an app
with documents, and collections and uploads made through the API."""
from __future__ import annotations

import copy
import io
import time
from types import SimpleNamespace

import pytest

from agent_portal import create_app, portal_of
from agent_portal.plugins.documents.worker import JobWorker

from conftest import chat_plugins, free_port


def worker_sections(tmp_path, **documents) -> dict:
    """Return the documents section's own places for one test: store, queue and service port."""
    return {"store": {"path": str(tmp_path / "vectors")},
            "queue": {"kind": "sqlite", "path": str(tmp_path / "queue.db")},
            "embedder": {"service_url": f"http://127.0.0.1:{free_port()}"}, **documents}


def start_worker(app) -> JobWorker:
    """Start a job worker for ``app``'s config; stop it with :func:`stop_worker`."""
    worker_app = create_app(copy.deepcopy(portal_of(app).config))
    worker = JobWorker(portal_of(worker_app))
    worker.start()
    return worker


def stop_worker(worker: JobWorker) -> None:
    worker.stop()
    worker.portal.shutdown()


def wait_for_files(client, headers, ids, timeout: float = 120.0, until=("ready", "failed")) -> list[dict]:
    """Poll ``GET /documents/files/<id>`` until every file is ``ready`` or ``failed``."""
    deadline = time.monotonic() + timeout
    while True:
        states = [client.get(f"/documents/files/{i}", headers=headers).json for i in ids]
        if all(s["status"] in until for s in states):
            return states
        assert time.monotonic() < deadline, states
        time.sleep(0.1)


def stored_chunks(app, timeout: float = 0.0, expect=None) -> list[tuple[str, int]]:
    """Return (file id, chunk index) of every chunk in ``app``'s LanceDB store, read as another
    process (the store is the job worker's); with ``expect``, waited for up to ``timeout``."""
    import lancedb

    path = portal_of(app).config["plugins"]["documents"]["store"]["path"]
    deadline = time.monotonic() + timeout
    while True:
        try:
            db, found = lancedb.connect(path), []
            for name in db.list_tables(limit=1000).tables:  # a table per collection
                rows = db.open_table(name).to_arrow()
                found += zip(rows["file_id"].to_pylist(), rows["chunk_index"].to_pylist())
        except (FileNotFoundError, ValueError):  # no chunk stored yet
            found = []
        if expect is None or expect(found) or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


REPORT_PAGES = [
    "Quarterly report. This document covers the operations of the northern warehouse.",
    "Budget section. The annual maintenance budget for the cooling towers is 48,000 euros, "
    "approved by the facilities board in March.",
    "Staffing section. The night shift has twelve technicians and two supervisors.",
]
POLICY = ["Employees may work remotely on Fridays.", "Travel must be booked through the internal portal."]


def document_sections(tmp_path, fake, **documents) -> dict:
    return {**chat_plugins(fake),
            "documents": worker_sections(tmp_path, **{"answer_model": "echo", "heartbeat_seconds": 0.3,
                                                      "chunk_chars": 400, "overlap_chars": 50, **documents})}


@pytest.fixture
def with_worker():
    """Start a job worker beside an app (stopped after the test)."""
    workers = []

    def start(app):
        workers.append(start_worker(app))
        return app

    yield start
    for worker in workers:
        stop_worker(worker)


def make_collection(client, headers, name="reports") -> str:
    created = client.post("/documents/collections", json={"name": name}, headers=headers)
    assert created.status_code == 201, created.data
    return created.json["id"]


def upload(client, headers, collection, *files, wait=True):
    """Upload ``files``; with ``wait``, until the worker has made each ready or failed (the
    answer's files then show their end state)."""
    answer = client.post(f"/documents/collections/{collection}/files", headers=headers,
                         content_type="multipart/form-data",
                         data={"file": [(io.BytesIO(data), name) for name, data in files]})
    if not (wait and answer.status_code == 202):
        return answer
    files = answer.json["files"]
    ended = wait_for_files(client, headers, [f["id"] for f in files])
    return SimpleNamespace(status_code=202, json={"files": [{**f, **e} for f, e in zip(files, ended)]})
