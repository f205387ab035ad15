"""Uploads: every file checked and parsed before anything is stored, then embedded and stored
(in the background for large files, with progress). The same content twice is stored once."""
from __future__ import annotations

import hashlib
import json
import logging
import threading

from flask import Response, g, request

from agent_portal import PortalError
from agent_portal.metering import MeteredCall

from .chunking import chunk_sections
from .collections import owned_collection, readable_collection
from .embedding import embedding_call
from .parsing import BadDocument, UnsupportedType, parse
from .settings import NAME

log = logging.getLogger("agent_portal.documents")


def _state(portal):
    return portal.extensions[NAME]


def _prepared(settings, upload) -> dict:
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1][:500]
    if not name:
        raise PortalError("Every `file` part needs a file name.", status=400, code="invalid_request")
    data = upload.read(settings.max_file_bytes + 1)
    if len(data) > settings.max_file_bytes:
        raise PortalError(f"{name} is larger than {settings.max_file_bytes} bytes.", status=413,
                          code="file_too_large")
    try:
        sections = parse(name, data)
    except UnsupportedType as exc:
        raise PortalError(str(exc), status=415, code="unsupported_type") from None
    except BadDocument as exc:
        raise PortalError(str(exc), status=422, code="unreadable_document") from None
    chunks = chunk_sections(sections, settings.chunk_chars, settings.overlap_chars)
    if not chunks:
        raise PortalError(f"{name}: has no text", status=422, code="unreadable_document")
    pages = max((s.page for s in sections if s.page is not None), default=None)
    return {"name": name, "data": data, "chunks": chunks, "pages": pages,
            "hash": hashlib.sha256(data).hexdigest()}


def upload_view(portal, collection_id):
    state, actor = _state(portal), g.actor
    owned_collection(portal, actor, collection_id)
    uploads = request.files.getlist("file")
    if not uploads:
        raise PortalError("Send the files as multipart `file` parts.", status=400, code="invalid_request")
    if len(uploads) > state.settings.max_files:
        raise PortalError(f"At most {state.settings.max_files} files per upload.", status=400, code="invalid_request")
    prepared = [_prepared(state.settings, upload) for upload in uploads]  # all checked before any is stored
    results = []
    for item in prepared:
        record, new = state.catalog.add_file(collection_id, actor.id, item["name"], item["hash"], len(item["data"]),
                                             item["pages"], len(item["chunks"]))
        if not new:
            results.append({**record, "duplicate": True})
            continue
        call = _metered(portal, actor, item, g.request_id)
        try:
            call.admit()
        except PortalError:
            state.catalog.delete_file(record["id"])
            raise
        if len(item["data"]) > state.settings.background_bytes:
            threading.Thread(target=_ingest_quietly, args=(portal, record, item, collection_id, call),
                             name="documents-ingest", daemon=True).start()
            results.append({**record, "duplicate": False})
            continue
        try:
            ingest(portal, record, item, collection_id, call)
        except PortalError:
            state.catalog.delete_file(record["id"])
            raise
        results.append({**state.catalog.file(record["id"]), "duplicate": False})
    return Response(json.dumps({"files": results}), status=200, mimetype="application/json")


def _metered(portal, actor, item, request_id) -> MeteredCall:
    return embedding_call(portal, actor, "\n".join(c.text for c in item["chunks"]), request_id)


def ingest(portal, record: dict, item: dict, collection_id: str, call: MeteredCall) -> None:
    """Embed and store one file's chunks; on any failure its chunks are removed and it is
    marked failed. The record of the embedding is sent either way."""
    state = _state(portal)
    chunks, file_id = item["chunks"], record["id"]
    batch = max(16, state.settings.embedder["batch_size"])
    try:
        rows = []
        for start in range(0, len(chunks), batch):
            part = chunks[start:start + batch]
            vectors = state.embedder.embed([c.text for c in part])
            rows += [{"vector": v, "collection_id": collection_id, "file_id": file_id, "file_name": item["name"],
                      "chunk_index": c.index, "page": c.page, "heading": c.heading, "text": c.text}
                     for c, v in zip(part, vectors)]
            state.catalog.progress(file_id, len(rows))
        state.store().add(rows)
        state.catalog.progress(file_id, len(rows), "ready")
        call.end("ok", 200)
    except Exception as exc:
        state.store().delete_file(file_id)
        message = exc.message if isinstance(exc, PortalError) else f"{type(exc).__name__}: {exc}"
        state.catalog.progress(file_id, 0, "failed", message)
        call.end("upstream_error", 502, message)
        if isinstance(exc, PortalError):
            raise
        raise PortalError(f"{item['name']}: could not be embedded and stored ({message}).", status=502,
                          code="ingest_failed") from exc


def _ingest_quietly(portal, record, item, collection_id, call) -> None:
    try:
        ingest(portal, record, item, collection_id, call)
    except PortalError as failure:
        log.warning("documents: ingesting %s failed: %s", record["id"], failure.message)


def file_view(portal, file_id):
    state, actor = _state(portal), g.actor
    record = state.catalog.file(file_id) if len(file_id) <= 64 else None
    if record is None:
        raise PortalError(f"No such file: {file_id}.", status=404, code="file_not_found")
    check = readable_collection if request.method == "GET" else owned_collection
    try:
        check(portal, actor, record["collection_id"])
    except PortalError as refusal:
        if refusal.status == 404:  # someone else's file does not exist, as their collection does not
            raise PortalError(f"No such file: {file_id}.", status=404, code="file_not_found") from None
        raise
    if request.method == "GET":
        return Response(json.dumps(record), status=200, mimetype="application/json")
    state.store().delete_file(file_id)
    state.catalog.delete_file(file_id)
    return Response(status=204)
