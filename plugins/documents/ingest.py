"""Uploads: every file of an upload passes the cheap checks (``checks``) before any is stored; each
new one is then stored ``queued`` and its ingestion queued for the job worker (``jobs``,
``pipeline``), and the upload answers 202 at once. ``GET /documents/files/<id>`` follows it:
``queued``, ``processing`` with progress, ``ready``, or ``failed`` with the reason, and a failed
file can be retried or uploaded again. The same content twice is stored once."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import unicodedata

from flask import Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from agent_portal import PortalError
from agent_portal.audit import note_change
from agent_portal.offload import off_loop

from .checks import check_file
from .collections import owned_collection, readable_collection
from .embedding import embedding_call
from .parsing import BadDocument, Caps, TooLarge, UnsupportedType
from .settings import state_of

log = logging.getLogger("agent_portal.documents")



def clean_name(name: str) -> str:
    """Return a file name without control and format characters (NUL, which PostgreSQL refuses;
    bidi overrides such as U+202E, which make ``exe.txt`` read as ``txt.exe``; zero-width ones)."""
    return "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf")).strip()


def upload_limit(settings) -> int:
    """Return the largest upload request: every file at its limit, and room for the form."""
    return settings.max_files * settings.max_file_bytes + 1024 * 1024


def _checked(settings, upload) -> dict:
    name = clean_name((upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1])[:500]
    if not name:
        raise PortalError("Every `file` part needs a file name.", status=400, code="invalid_request")
    data = upload.read(settings.max_file_bytes + 1)
    if len(data) > settings.max_file_bytes:
        raise PortalError(f"{name} is larger than {settings.max_file_bytes} bytes (documents.max_file_bytes).",
                          status=413, code="file_too_large")
    caps = Caps(max_pages=settings.max_pages, max_text_chars=settings.max_text_chars)
    try:
        pages = off_loop(check_file, name, data, caps, settings.max_inflated_bytes)
    except UnsupportedType as exc:
        raise PortalError(str(exc), status=415, code="unsupported_type") from None
    except TooLarge as exc:
        raise PortalError(str(exc), status=413, code="file_too_large") from None
    except BadDocument as exc:
        raise PortalError(str(exc), status=422, code="unreadable_document") from None
    return {"name": name, "data": data, "pages": pages, "hash": hashlib.sha256(data).hexdigest()}


def upload_view(portal, collection_id):
    state, actor = state_of(portal), g.actor
    owned_collection(portal, actor, collection_id)
    try:
        uploads = request.files.getlist("file")
    except RequestEntityTooLarge:
        limit = upload_limit(state.settings)
        raise PortalError(f"The upload is larger than {limit} bytes: at most {state.settings.max_files} files "
                          f"(documents.max_files_per_upload) of {state.settings.max_file_bytes} bytes each "
                          "(documents.max_file_bytes).", status=413, code="body_too_large") from None
    if not uploads:
        raise PortalError("Send the files as multipart `file` parts.", status=400, code="invalid_request")
    if len(uploads) > state.settings.max_files:
        raise PortalError(f"At most {state.settings.max_files} files per upload.", status=400, code="invalid_request")
    checked = [_checked(state.settings, upload) for upload in uploads]  # all checked before any is stored
    results = []
    for item in checked:
        existing = state.catalog.file_with_content(collection_id, item["hash"])
        if existing is not None and existing["status"] != "failed":
            results.append({**existing, "duplicate": True})
            continue
        # what embedding it may cost, reserved now: its text is at most its size (and the cap)
        estimate = math.ceil(min(len(item["data"]), state.settings.max_text_chars) / 3) + 3
        call = embedding_call(portal, actor, "", g.request_id, estimated_prompt_tokens=estimate)
        call.admit()
        record, new = state.catalog.add_file(collection_id, actor.id, item["name"], item["hash"], item["data"],
                                             item["pages"], call.handover())
        if not new:  # the same content arrived meanwhile from another upload
            call.end("duplicate", 200, usage=(0, 0))
            results.append({**record, "duplicate": True})
            continue
        try:
            state.queue.enqueue(record["id"])
        except Exception as exc:  # the queue away: the worker's reaper queues it again from the catalog
            log.warning("documents: could not queue %s now (%s); the worker will find it", record["id"], exc)
        results.append({**record, "duplicate": False})
    return Response(json.dumps({"files": results}), status=202, mimetype="application/json")


def retry_view(portal, file_id):
    """Queue a failed file again (its owner, or an admin)."""
    state = state_of(portal)
    record = _file_for(portal, file_id, owned_collection)
    if record["status"] != "failed" or not state.catalog.retry(file_id):
        raise PortalError(f"{record['name']} is {record['status']}; only a failed file is retried.", status=409,
                          code="not_failed")
    state.queue.enqueue(file_id)
    queued = state.catalog.file(file_id)
    note_change("documents.retry", f"files/{file_id}", {"status": record["status"], "error": record["error"]},
                {"status": queued["status"], "attempts": queued["attempts"]})
    return Response(json.dumps(queued), status=202, mimetype="application/json")


def _file_for(portal, file_id: str, check) -> dict:
    record = state_of(portal).catalog.file(file_id) if len(file_id) <= 64 else None
    if record is None:
        raise PortalError(f"No such file: {file_id}.", status=404, code="file_not_found")
    try:
        check(portal, g.actor, record["collection_id"])
    except PortalError as refusal:
        if refusal.status == 404:  # someone else's file does not exist, as their collection does not
            raise PortalError(f"No such file: {file_id}.", status=404, code="file_not_found") from None
        raise
    return record


def file_view(portal, file_id):
    state = state_of(portal)
    record = _file_for(portal, file_id, readable_collection if request.method == "GET" else owned_collection)
    if request.method == "GET":
        return Response(json.dumps(record), status=200, mimetype="application/json")
    note_change("documents.delete_file", f"files/{file_id}", record, None)
    state.catalog.delete_file(file_id)  # at once: searches leave it out; a job under way sees it gone
    state.queue.purge([file_id])  # its chunks, by the job worker (the store is its alone)
    return Response(status=204)
