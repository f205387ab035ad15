"""``agent-portal worker``: the documents job worker. It takes ingestion and purge jobs from the
queue (huey's consumer, in threads), holds the embedding model and the vector store (the only
process of a host that does), answers the host's query embeddings and searches on
``embedder.service_url``, and finds jobs a dead worker left (:class:`Reaper`). Several may run on
one queue, on one machine or many.

Ctrl-C or SIGTERM stop it gracefully: a job under way gives its file back to the queue at its
next batch, and is taken up again at the next start; SIGKILL loses nothing either, as the file's
lease runs out and a worker takes it up again.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

from .embedders import make_embedder
from .service import WorkerService
from .pipeline import ingest_file
from .settings import NAME

log = logging.getLogger("agent_portal.documents")


class Reaper:
    """Every ``interval`` seconds, queues again each file whose job may be lost: ``processing``
    past its lease (its worker died) or ``queued`` and untouched for long (the queue lost it);
    a file whose attempts are spent ends ``failed``."""

    def __init__(self, state, stopping: threading.Event):
        self.state, self.stopping = state, stopping
        lease = state.settings.worker["lease_seconds"]
        self.interval = max(0.5, min(lease / 2, 30.0))
        self.queued_for = max(lease * 5, 300.0)

    def sweep(self) -> int:
        """Queue the stranded files again; return how many."""
        catalog, attempts = self.state.catalog, self.state.settings.worker["attempts"]
        found = 0
        for stranded in catalog.stranded(self.queued_for):
            if stranded["status"] == "processing" and stranded["attempts"] >= attempts:
                catalog.fail(stranded["id"], f"gave up after {attempts} attempts (its worker stopped or died "
                                             "each time)")
                continue
            catalog.touch(stranded["id"])
            self.state.queue.enqueue(stranded["id"])
            found += 1
        if found:
            log.info("documents: %d stranded file(s) queued again", found)
        return found

    def run(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception as exc:  # the database away for a moment: the next sweep tries again
                log.warning("documents: the reaper could not sweep: %s", exc)
            if self.stopping.wait(self.interval):
                return


class JobWorker:
    """The worker's parts around one portal: start them, stop them (gracefully)."""

    def __init__(self, portal, serve: bool = True):
        self.portal = portal
        self.state = state = portal.extensions[NAME]
        state.embedder = make_embedder(portal, state.settings)
        self.stopping = threading.Event()
        spec = state.settings.embedder
        self.service = WorkerService(state, spec["service_url"], spec.get("service_bind")) if serve else None
        self.reaper = Reaper(state, self.stopping)
        state.queue.runner = lambda file_id: ingest_file(portal, file_id, self.stopping, state.queue.enqueue)
        state.queue.purger = lambda file_ids: [state.store().delete_file(f) for f in file_ids]
        self.consumer = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Serve query embeddings, load the model, sweep, and take jobs (each in threads)."""
        if self.service is not None and self.service.start():
            self._threads.append(threading.Thread(target=self._load_model, name="embedder-load", daemon=True))
        self._threads.append(threading.Thread(target=self.reaper.run, name="documents-reaper", daemon=True))
        for thread in self._threads:
            thread.start()
        self.consumer = _consumer(self.state, self.stopping)
        self.consumer.start()

    def _load_model(self):
        try:
            if hasattr(self.state.embedder, "load"):
                self.state.embedder.load()
                log.info("documents: the embedding model is loaded")
            self.state.store()
        except Exception as exc:
            log.error("documents: the embedding model or the store failed to open: %s", exc)

    def stop(self) -> None:
        """Stop taking jobs; jobs under way give their files back; wait for them (at most
        ``worker.graceful_seconds``)."""
        self.stopping.set()
        if self.consumer is not None and not self.consumer.stop_flag.is_set():  # (a signal stopped it already)
            self.consumer.stop(graceful=True)
        if self.service is not None:
            self.service.stop()
        for thread in self._threads:  # a model still loading is let finish: a thread torn down inside
            thread.join(120)          # onnxruntime's or torch's native code at exit aborts the process


def _consumer(state, stopping: threading.Event):
    from huey.consumer import Consumer

    class GracefulConsumer(Consumer):
        """huey's consumer with both SIGINT and SIGTERM graceful, and jobs told at once."""

        def _handle_signal(self, signum, frame):
            stopping.set()
            super()._handle_signal(signum, frame)
            if signum in (signal.SIGINT, signal.SIGTERM):
                self._restart, self._graceful = False, True

    return GracefulConsumer(state.queue.huey, workers=state.settings.worker["threads"], worker_type="thread",
                            periodic=False, initial_delay=0.1, max_delay=1.0, backoff=1.5,
                            shutdown_timeout=state.settings.worker["graceful_seconds"],
                            check_worker_health=True)


def run(args, load_portal) -> int:
    """The command: run the job worker until Ctrl-C or SIGTERM."""
    portal = load_portal()
    if NAME not in portal.extensions:
        print("agent-portal worker: the documents plugin is off in this config; nothing to do")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # once, for the process: every thread and parsing process started from here inherits it
    lower_priority(portal.extensions[NAME].settings.worker["nice"])
    worker = JobWorker(portal)
    worker.start()
    log.info("documents: worker started (%s queue, %d thread(s))", worker.state.settings.queue["kind"],
             worker.state.settings.worker["threads"])
    from huey.consumer import ConsumerStopped

    try:
        while True:  # huey's Consumer.run() without its start (done above) and its restart
            worker.consumer.loop()
    except ConsumerStopped:
        pass
    finally:
        worker.stop()
        portal.shutdown()
    log.info("documents: worker stopped")
    return 0


def lower_priority(steps: int) -> None:
    """Lower this process's CPU priority by ``steps`` (``os.nice``), so that on a machine shared
    with serving workers, embedding and parsing never take the CPU a caller is waiting for."""
    if steps > 0:
        try:
            os.nice(steps)
        except OSError as exc:  # not allowed here: run at the priority given
            log.warning("documents: could not lower the job worker's priority: %s", exc)
