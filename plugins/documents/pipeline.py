"""One file's ingestion, as the job worker runs it: claim the file, parse it in a bounded child,
chunk, embed in small batches, store, and end its metered call.

The catalog is the truth of a job: a worker holds a file under a lease it renews while it works.
A worker that dies stops renewing, and the next worker to look takes the file up again (see
``worker.Reaper``); its chunks are written in one go after the last batch, once any an earlier
attempt left are removed, so each chunk is stored once however often a file is taken up.
"""
from __future__ import annotations

import logging
import threading
import uuid

from agent_portal import PortalError
from agent_portal.counting import estimate_tokens
from agent_portal.metering import MeteredCall

from .chunking import chunk_sections, embedding_text
from .parsing import BadDocument, Caps, TooLarge, UnsupportedType
from .sandbox import Stopped, parse_in_child
from .settings import NAME

log = logging.getLogger("agent_portal.documents")
BATCH = 16  # chunks a batch: a waiting query's embedding goes between two batches


class Interrupted(Exception):
    """The job stopped before its end: the worker is stopping, or its lease went to another."""


class LeaseKeeper:
    """Renews a job's lease in the background while it works; ``lost`` once another worker
    took the file or it was deleted."""

    def __init__(self, catalog, file_id: str, holder: str, lease: float):
        self.catalog, self.file_id, self.holder, self.lease = catalog, file_id, holder, lease
        self.lost = False
        self.progress: dict = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{file_id[:8]}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _run(self):
        while not self._done.wait(min(self.lease / 3, 1.0)):  # at least every second: progress shows
            self.renew()

    def renew(self) -> None:
        try:
            if not self.catalog.renew(self.file_id, self.holder, self.lease, **self.progress):
                self.lost = True
        except Exception as exc:  # the database away for a moment: the next renewal tries again
            log.warning("documents: could not renew the lease of %s: %s", self.file_id, exc)


def ingest_file(portal, file_id: str, stopping: threading.Event, requeue) -> str:
    """Run the job of ``file_id``; return how it ended: ``ready``, ``failed``, ``retrying``,
    ``given back`` (the worker is stopping; queued again) or ``skipped`` (another worker holds
    it, or it is ready, failed or gone). ``requeue(file_id, delay)`` queues it again."""
    state = portal.extensions[NAME]
    catalog, settings = state.catalog, state.settings
    lease, attempts = settings.worker["lease_seconds"], settings.worker["attempts"]
    holder = uuid.uuid4().hex
    row = catalog.claim(file_id, holder, lease)
    if row is None:
        return "skipped"
    job = catalog.job(file_id)
    if job is None:
        catalog.finish(file_id, holder, "failed", "its upload is no longer stored; upload it again")
        return "failed"
    data, handover = job
    call = MeteredCall.taken_over(portal, handover) if handover else None
    if row.attempts > attempts:
        return _failed(catalog, call, file_id, holder, f"{row.name}: gave up after {attempts} attempts "
                       "(its worker stopped or died each time)", "ingest_failed", 500)
    try:
        with LeaseKeeper(catalog, file_id, holder, lease) as keeper:
            texts = _embed_and_store(state, row, data, keeper, stopping, call)
    except PortalError as refusal:  # its text would take a limit far past: refused before embedding
        return _failed(catalog, call, file_id, holder, f"{row.name}: {refusal.message}", "refused", refusal.status)
    except (UnsupportedType, BadDocument) as exc:
        status = 413 if isinstance(exc, TooLarge) else 415 if isinstance(exc, UnsupportedType) else 422
        return _failed(catalog, call, file_id, holder, str(exc), "unreadable_document", status)
    except Interrupted as exc:  # nothing was stored yet: the chunks go in one write at the end
        if catalog.finish(file_id, holder, "queued", attempts=max(0, row.attempts - 1)):
            requeue(file_id, 0)
        log.info("documents: %s given back (%s)", file_id, exc)
        return "given back"
    except Exception as exc:
        reason = f"{row.name}: could not be embedded and stored ({type(exc).__name__}: {exc})"
        if row.attempts < attempts:
            delay = settings.worker["retry_delay_seconds"] * 2 ** (row.attempts - 1)
            if catalog.finish(file_id, holder, "queued", reason):  # still ours: clear what it may have written
                _forget_chunks(state, file_id, row.collection_id)
                requeue(file_id, delay)
            log.warning("documents: %s failed, retrying in %.0f s: %s", file_id, delay, reason)
            return "retrying"
        return _failed(catalog, call, file_id, holder, reason, "ingest_failed", 502, state)
    if not catalog.finish(file_id, holder, "ready"):
        if catalog.file(file_id) is None:  # deleted while it was embedded
            _forget_chunks(state, file_id, row.collection_id)
        return "skipped"
    if call is not None:
        call.prompt_text = "\n".join(texts)
        call.end("ok", 200)
    return "ready"


def _embed_and_store(state, row, data: bytes, keeper: LeaseKeeper, stopping: threading.Event,
                     call: MeteredCall | None) -> list[str]:
    settings = state.settings
    caps = Caps(max_pages=settings.max_pages, max_text_chars=settings.max_text_chars)
    try:
        sections = parse_in_child(row.name, data, caps, settings.worker["parse_timeout_seconds"],
                                  settings.worker["parse_memory_mb"], stopping.is_set)
    except Stopped:
        raise Interrupted("the worker is stopping") from None
    embedder = state.embedder
    chunks = chunk_sections(sections, settings.chunk_chars, settings.overlap_chars, fits=None if not settings.fit_chunks
                            else lambda context, text: embedder.reads_whole(embedding_text(row.name, context, text)))
    if not chunks:
        raise BadDocument(f"{row.name}: has no text")
    if call is not None:  # the upload reserved from its size; its text may be longer (a compressed PDF)
        call.readmit(sum(estimate_tokens(c.text) + 1 for c in chunks) + 3)
    pages = max((s.page for s in sections if s.page is not None), default=row.pages)
    keeper.progress = {"chunks": len(chunks), "pages": pages, "done_chunks": 0}
    keeper.renew()
    _forget_chunks(state, row.id, row.collection_id)  # what an earlier attempt may have left
    rows: list[dict] = []
    for start in range(0, len(chunks), BATCH):
        if stopping.is_set():
            raise Interrupted("the worker is stopping")
        if keeper.lost:
            raise Interrupted("another worker took the file up")
        part = chunks[start:start + BATCH]
        vectors = embedder.embed([embedding_text(row.name, c.context, c.text) for c in part])
        rows += [{"vector": v, "collection_id": row.collection_id, "file_id": row.id, "file_name": row.name,
                  "chunk_index": c.index, "page": c.page, "heading": c.heading, "text": c.text}
                 for c, v in zip(part, vectors)]
        keeper.progress["done_chunks"] = len(rows)
    keeper.renew()
    if keeper.lost:
        raise Interrupted("another worker took the file up")
    state.store().add(rows)
    return [c.text for c in chunks]


def _forget_chunks(state, file_id: str, collection_id: str | None = None) -> None:
    try:
        state.store().delete_file(file_id, collection_id)
    except Exception as exc:
        log.warning("documents: could not remove the chunks of %s: %s", file_id, exc)


def _failed(catalog, call, file_id, holder, reason: str, outcome: str, status: int, state=None) -> str:
    if catalog.finish(file_id, holder, "failed", reason) and state is not None:
        _forget_chunks(state, file_id)
    if call is not None:
        call.end(outcome, status, reason, usage=(0, 0))
    log.warning("documents: %s failed: %s", file_id, reason)
    return "failed"

