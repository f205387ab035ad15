"""A documents job worker for tests: the real `agent-portal worker` parts (huey's consumer, the
embedding service, the reaper) run in this process, with a portal of their own built from the
same config as the app under test, as a worker process builds one."""
from __future__ import annotations

import copy
import socket
import time

from agent_portal import create_app, portal_of
from agent_portal.plugins.documents.worker import JobWorker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
            rows = lancedb.connect(path).open_table("chunks").to_arrow()
            found = list(zip(rows["file_id"].to_pylist(), rows["chunk_index"].to_pylist()))
        except (FileNotFoundError, ValueError):  # no chunk stored yet
            found = []
        if expect is None or expect(found) or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)
