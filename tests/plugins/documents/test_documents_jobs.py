"""Ingestion jobs that survive what happens to workers: `agent-portal worker` processes killed,
stopped with Ctrl-C and restarted, two on one shared queue; files that fail and are retried."""
from __future__ import annotations

import io
import os
import signal
import time
import uuid

import pytest
import yaml

from agent_portal import create_app, portal_of

from conftest import bearer, chat_plugins
from documents_files import page_bomb_pdf
from documents_worker import start_worker, stop_worker, stored_chunks, wait_for_files, worker_sections
from helpers import start_job_worker

pytestmark = pytest.mark.integration
LONG_TEXT = "\n\n".join(f"Section {i}. The valve V{i} opens at {i * 3} bar and closes at {i * 2} bar; "
                        f"inspect it every {i % 12 + 1} months." for i in range(3000)).encode()


def write_config(tmp_path, fake, **documents):
    config = {"portal": {"secret_key": "jobs-test-secret-4c9e1b7a3f5d2086e", "log_level": "WARNING",
                         "database_url": f"sqlite:///{tmp_path}/portal.db"},
              "plugins": {**chat_plugins(fake), "portal_tokens": {},
                          "documents": worker_sections(tmp_path, chunk_chars=300, overlap_chars=0, **documents)}}
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def upload(client, headers, collection, *files):
    answer = client.post(f"/documents/collections/{collection}/files", headers=headers,
                         content_type="multipart/form-data",
                         data={"file": [(io.BytesIO(data), name) for name, data in files]})
    assert answer.status_code == 202, answer.data
    return [f["id"] for f in answer.json["files"]]


def new_collection(client, headers) -> str:
    return client.post("/documents/collections", json={"name": f"c-{uuid.uuid4().hex[:6]}"}, headers=headers).json["id"]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


def ingestion_under_way(tmp_path, fake, **documents):
    """Return (app, client, headers, the job worker process, file id) once a long file is a
    tenth ingested by a real `agent-portal worker`."""
    path = write_config(tmp_path, fake, **documents)
    app = create_app(str(path))
    client, alice = app.test_client(), bearer(app, "alice")
    worker = start_job_worker(path, tmp_path / "worker-1.log")
    [file_id] = upload(client, alice, new_collection(client, alice), ("valves.txt", LONG_TEXT))
    wait_until(lambda: client.get(f"/documents/files/{file_id}", headers=alice).json["progress"] > 0.1, 120,
               "the worker never got going")
    return path, app, client, alice, worker, file_id


def test_a_worker_killed_mid_job_and_restarted_ends_the_file_ready_with_each_chunk_stored_once(tmp_path, fake_upstream):
    path, app, client, alice, worker, file_id = ingestion_under_way(tmp_path, fake_upstream,
                                                                    worker={"lease_seconds": 2})
    try:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        killed = client.get(f"/documents/files/{file_id}", headers=alice).json
        assert killed["status"] == "processing" and killed["progress"] < 1.0
        worker = start_job_worker(path, tmp_path / "worker-2.log")
        [done] = wait_for_files(client, alice, [file_id], timeout=180)
        assert (done["status"], done["attempts"], done["progress"]) == ("ready", 2, 1.0)
        chunks = stored_chunks(app)
        assert len(chunks) == done["chunks"] == len(set(chunks)) > 100
    finally:
        worker.kill()
        worker.wait(10)
        portal_of(app).shutdown()


def test_ctrl_c_mid_ingestion_stops_in_time_and_the_job_resumes_at_the_next_start(tmp_path, fake_upstream):
    path, app, client, alice, worker, file_id = ingestion_under_way(tmp_path, fake_upstream,
                                                                    worker={"graceful_seconds": 5})
    try:
        interrupted = time.monotonic()
        worker.send_signal(signal.SIGINT)
        assert worker.wait(5 + 3) == 0 and time.monotonic() - interrupted < 5 + 3
        given_back = client.get(f"/documents/files/{file_id}", headers=alice).json
        assert (given_back["status"], given_back["attempts"]) == ("queued", 0)
        assert stored_chunks(app) == []
        worker = start_job_worker(path, tmp_path / "worker-2.log")
        [done] = wait_for_files(client, alice, [file_id], timeout=180)
        assert (done["status"], done["attempts"]) == ("ready", 1)
        assert len(stored_chunks(app)) == done["chunks"]
    finally:
        worker.kill()
        worker.wait(10)
        portal_of(app).shutdown()


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
def test_two_workers_on_one_shared_queue_ingest_twenty_files_each_once(kind, tmp_path, fake_upstream, request):
    url = request.getfixturevalue("redis_url" if kind == "redis" else "pg_url")  # this run's own
    queue = {"kind": kind, "url": url, "name": f"test-{uuid.uuid4().hex[:12]}"}
    path = write_config(tmp_path, fake_upstream, queue=queue)
    app = create_app(str(path))
    client, alice = app.test_client(), bearer(app, "alice")
    workers = [start_job_worker(path, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    try:
        collection = new_collection(client, alice)
        files = [(f"note-{n}.txt", (f"Note {n}. " + f"The pump in hall {n} needs oil. " * 40).encode())
                 for n in range(20)]
        ids = upload(client, alice, collection, *files)
        ended = wait_for_files(client, alice, ids, timeout=240)
        assert {(f["status"], f["attempts"]) for f in ended} == {("ready", 1)}
        chunks = stored_chunks(app)
        assert len(chunks) == len(set(chunks)) == sum(f["chunks"] for f in ended)
        taken = [(tmp_path / f"worker-{n}.log").read_text().count("Executing ") for n in (1, 2)]
        assert sum(taken) == 20 and min(taken) > 0, taken  # both worked; no job ran twice
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        for worker in workers:
            worker.wait(20)
        portal_of(app).shutdown()


def test_a_file_that_fails_says_why_and_can_be_retried_or_uploaded_again(make_app, tmp_path, fake_upstream):
    sections = {**chat_plugins(fake_upstream),
                "documents": worker_sections(tmp_path, max_text_chars=1000, worker={"attempts": 2})}
    app = make_app(**sections)
    client, alice = app.test_client(), bearer(app, "alice")
    worker = start_worker(app)
    collection = new_collection(client, alice)
    long_text = ("A sentence about the cooling towers. " * 100).encode()  # 3,700 characters
    bomb, over = upload(client, alice, collection, ("bomb.pdf", page_bomb_pdf(1000)), ("long.txt", long_text))
    ended = {f["name"]: f for f in wait_for_files(client, alice, [bomb, over])}
    assert ended["bomb.pdf"]["status"] == "failed" and "more than once" in ended["bomb.pdf"]["error"]
    assert ended["long.txt"]["status"] == "failed"
    assert "more than 1000 characters of text (documents.max_text_chars)" in ended["long.txt"]["error"]
    assert client.post(f"/documents/files/{over}/retry", headers=bearer(app, "bob")).status_code == 404
    stop_worker(worker)

    # the admin raises the cap; the file is retried and ingests
    sections["documents"]["max_text_chars"] = 100_000
    worker = start_worker(_same_database(make_app, app, sections))
    try:
        retried = client.post(f"/documents/files/{over}/retry", headers=alice)
        assert retried.status_code == 202 and retried.json["status"] == "queued"
        assert client.post(f"/documents/files/{over}/retry", headers=alice).status_code == 409
        [done] = wait_for_files(client, alice, [over])
        assert (done["status"], done["error"], done["attempts"]) == ("ready", None, 1)
        # a failed file uploaded again is queued again, not answered as a duplicate
        again = client.post(f"/documents/collections/{collection}/files", headers=alice,
                            content_type="multipart/form-data", data={"file": [(io.BytesIO(page_bomb_pdf(1000)), "b.pdf")]})
        assert again.status_code == 202
        assert (again.json["files"][0]["id"], again.json["files"][0]["duplicate"]) == (bomb, False)
        [failed_again] = wait_for_files(client, alice, [bomb])
        assert failed_again["status"] == "failed"
    finally:
        stop_worker(worker)


def _same_database(make_app, app, sections):
    """Return an app with ``sections`` on ``app``'s database (a worker with a changed config)."""
    config = portal_of(app).config
    return make_app(config={"portal": dict(config["portal"]), "plugins": {**sections, "portal_tokens": {}}})


def test_a_parse_past_its_time_is_killed_and_named():
    from agent_portal.plugins.documents.parsing import Caps, TooLarge
    from agent_portal.plugins.documents.sandbox import Stopped, parse_in_child

    with pytest.raises(TooLarge, match=r"took longer than 0.05 s \(documents.worker.parse_timeout_seconds\)"):
        parse_in_child("slow.txt", b"text", Caps(), timeout=0.05, memory_mb=512)
    with pytest.raises(Stopped):
        parse_in_child("any.txt", b"text", Caps(), timeout=30, memory_mb=512, should_stop=lambda: True)
    assert parse_in_child("fine.txt", b"plain words", Caps(), timeout=30, memory_mb=512)[0].text == "plain words"


def test_a_transient_failure_is_retried_after_a_delay_and_the_file_ends_ready(make_app, tmp_path, fake_upstream):
    app = make_app(**{**chat_plugins(fake_upstream),
                      "documents": worker_sections(tmp_path, worker={"retry_delay_seconds": 1})})
    client, alice = app.test_client(), bearer(app, "alice")
    worker = start_worker(app)
    real, failed_at = worker.state.embedder.embed, []

    def flaky(texts, query=False):  # the embedding backend is away once
        if not query and not failed_at:
            failed_at.append(time.monotonic())
            raise ConnectionError("the embedding backend is away")
        return real(texts, query)

    worker.state.embedder.embed = flaky
    try:
        [file_id] = upload(client, alice, new_collection(client, alice), ("a.txt", b"A note about the pumps."))
        first = wait_until(lambda: (f := client.get(f"/documents/files/{file_id}", headers=alice).json)["error"] and f,
                           30, "the failure never showed")
        assert first["status"] == "queued" and "ConnectionError: the embedding backend is away" in first["error"]
        [done] = wait_for_files(client, alice, [file_id])
        assert (done["status"], done["attempts"], done["error"]) == ("ready", 2, None)
        assert time.monotonic() - failed_at[0] >= 1.0
        assert len(stored_chunks(app)) == done["chunks"] == 1
    finally:
        stop_worker(worker)


def test_a_file_an_older_portal_left_processing_forever_is_found_and_ends_failed(make_app, tmp_path, fake_upstream):
    import sqlalchemy as sa

    database = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:  # the table as the portal before durable jobs made it, one file stuck
        conn.execute(sa.text(
            "CREATE TABLE portal_doc_files (id VARCHAR(32) PRIMARY KEY, collection_id VARCHAR(32) NOT NULL, "
            "name VARCHAR(500) NOT NULL, content_hash VARCHAR(64) NOT NULL, size INTEGER NOT NULL, "
            "status VARCHAR(16) NOT NULL, pages INTEGER, chunks INTEGER NOT NULL, done_chunks INTEGER NOT NULL, "
            "error TEXT, owner VARCHAR(200) NOT NULL, created_at FLOAT NOT NULL)"))
        conn.execute(sa.text("INSERT INTO portal_doc_files VALUES ('stuck', 'c1', 'big.txt', 'h', 900000, "
                             "'processing', NULL, 800, 690, NULL, 'alice', 1.0)"))
    config = {"portal": {"secret_key": "old-portal-secret-7e2a9d4b1c6f3058a", "log_level": "WARNING",
                         "database_url": f"sqlite:///{database}"},
              "plugins": {**chat_plugins(fake_upstream), "portal_tokens": {},
                          "documents": worker_sections(tmp_path, worker={"lease_seconds": 1})}}
    app = make_app(config=config)
    worker = start_worker(app)
    try:
        catalog = portal_of(app).extensions["documents"].catalog
        ended = wait_until(lambda: (f := catalog.file("stuck"))["status"] != "processing" and f, 30,
                           "the stuck file was never taken up")
        assert ended["status"] == "failed" and "upload it again" in ended["error"]
    finally:
        stop_worker(worker)


def test_a_job_worker_started_inside_a_process_leaves_that_process_priority_alone(make_app, tmp_path, fake_upstream):
    app = make_app(**chat_plugins(fake_upstream), documents=worker_sections(tmp_path))
    before = os.getpriority(os.PRIO_PROCESS, 0)
    workers = [start_worker(app) for _ in range(2)]
    try:  # only the worker command lowers its own process's priority (documents.worker.nice)
        assert os.getpriority(os.PRIO_PROCESS, 0) == before
    finally:
        for worker in workers:
            stop_worker(worker)
