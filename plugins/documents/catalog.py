"""Collections, who may read them, and their files, in the portal's database.

A collection belongs to the user who made it; its owner or an admin may share it with roles
and with named users. Everyone else is told it does not exist (404).
"""
from __future__ import annotations

import json
import pickle
import time
import uuid

import sqlalchemy as sa

from agent_portal.database import create_tables

metadata = sa.MetaData()
collections = sa.Table(
    "portal_doc_collections", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("owner", sa.String(200), nullable=False, index=True),
    sa.Column("shared_roles", sa.Text, nullable=False, default="[]"),
    sa.Column("shared_users", sa.Text, nullable=False, default="[]"),
    sa.Column("shared_groups", sa.Text, default="[]"),  # Open WebUI groups (portal_actor_groups)
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("owner", "name", name="uq_portal_doc_collections_owner_name"),
)
files = sa.Table(
    "portal_doc_files", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("collection_id", sa.String(32), nullable=False, index=True),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # queued, processing, ready, failed
    sa.Column("pages", sa.Integer),
    sa.Column("chunks", sa.Integer, nullable=False, default=0),
    sa.Column("done_chunks", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # the ingestion job: attempts so far, and who holds it until when (a lease a dead worker loses)
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", sa.Float),
    sa.Column("updated_at", sa.Float),
    sa.UniqueConstraint("collection_id", "content_hash", name="uq_portal_doc_files_content"),
)
# what a job needs until its file is ready: the file itself and its metered call (pickled: the
# record and its reservation, settled by the worker that ends it)
jobs = sa.Table(
    "portal_doc_jobs", metadata,
    sa.Column("file_id", sa.String(32), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("meter", sa.LargeBinary),
)


def _collection(row) -> dict:
    return {"id": row.id, "name": row.name, "description": row.description, "owner": row.owner,
            "shared_with": {"roles": json.loads(row.shared_roles), "users": json.loads(row.shared_users),
                            "groups": json.loads(row.shared_groups or "[]")},
            "created_at": row.created_at}


def _lease_over(now: float):
    """Whose lease ran out, or who never had one (a file an older portal left ``processing``)."""
    return sa.or_(files.c.lease_until.is_(None), files.c.lease_until < now)


def file_view(row) -> dict:
    return {"id": row.id, "collection_id": row.collection_id, "name": row.name, "status": row.status,
            "size": row.size, "pages": row.pages, "chunks": row.chunks,
            "progress": round(row.done_chunks / row.chunks, 3) if row.chunks else (1.0 if row.status == "ready" else 0.0),
            "error": row.error, "attempts": row.attempts or 0, "created_at": row.created_at}


class Catalog:
    """Collections and files in the portal's database."""

    def __init__(self, engine, groups_of=None):
        self.engine = engine
        self.groups_of = groups_of or (lambda actor: ())  # actor -> the names of their groups
        create_tables(engine, metadata)

    # --- collections -------------------------------------------------------------------------------
    def create_collection(self, owner: str, name: str, description: str) -> dict | None:
        """Return the new collection, or None when ``owner`` already has one of that name."""
        row = {"id": uuid.uuid4().hex, "name": name, "description": description, "owner": owner,
               "shared_roles": "[]", "shared_users": "[]", "shared_groups": "[]", "created_at": time.time()}
        try:
            with self.engine.begin() as conn:
                conn.execute(collections.insert().values(**row))
        except sa.exc.IntegrityError:
            return None
        return self.collection(row["id"])

    def collection(self, collection_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(collections).where(collections.c.id == collection_id)).first()
        return None if row is None else _collection(row)

    def readable(self, actor) -> list[dict]:
        """Return the collections ``actor`` may read: their own, those shared with their role, a
        group of theirs or with them by name; every collection for an admin. Own ones first,
        then by age."""
        with self.engine.connect() as conn:
            rows = [_collection(r) for r in conn.execute(sa.select(collections).order_by(collections.c.created_at))]
        if actor.role == "admin":
            return sorted(rows, key=lambda c: c["owner"] != actor.id)
        mine = [c for c in rows if c["owner"] == actor.id]
        groups = set(self.groups_of(actor)) if any(c["shared_with"]["groups"] for c in rows) else set()
        shared = [c for c in rows if c["owner"] != actor.id and (actor.role in c["shared_with"]["roles"]
                                                                  or actor.id in c["shared_with"]["users"]
                                                                  or groups & set(c["shared_with"]["groups"]))]
        return mine + shared

    def share(self, collection_id: str, roles: list[str], users: list[str], groups: list[str] = ()) -> dict:
        with self.engine.begin() as conn:
            conn.execute(collections.update().where(collections.c.id == collection_id).values(
                shared_roles=json.dumps(sorted(set(roles))), shared_users=json.dumps(sorted(set(users))),
                shared_groups=json.dumps(sorted(set(groups)))))
        return self.collection(collection_id)

    def delete_collection(self, collection_id: str) -> list[str]:
        """Delete the collection and its files' rows; returns the file ids (their chunks go next)."""
        with self.engine.begin() as conn:
            ids = [r.id for r in conn.execute(sa.select(files.c.id).where(files.c.collection_id == collection_id))]
            conn.execute(jobs.delete().where(jobs.c.file_id.in_(ids)))
            conn.execute(files.delete().where(files.c.collection_id == collection_id))
            conn.execute(collections.delete().where(collections.c.id == collection_id))
        return ids

    # --- files -----------------------------------------------------------------------------------------
    def add_file(self, collection_id: str, owner: str, name: str, content_hash: str, data: bytes,
                 pages: int | None, meter) -> tuple[dict, bool]:
        """Store a new file ``queued`` with what its job needs; return (the file, True). The same
        content again: (the file already holding it, False), unless that one failed, which is
        queued again with this upload (True)."""
        now = time.time()
        row = {"id": uuid.uuid4().hex, "collection_id": collection_id, "name": name, "content_hash": content_hash,
               "size": len(data), "status": "queued", "pages": pages, "chunks": 0, "done_chunks": 0,
               "error": None, "owner": owner, "created_at": now, "attempts": 0, "updated_at": now}
        try:
            with self.engine.begin() as conn:
                conn.execute(files.insert().values(**row))
                conn.execute(jobs.insert().values(file_id=row["id"], data=data, meter=pickle.dumps(meter)))
            return self.file(row["id"]), True
        except sa.exc.IntegrityError:
            existing = self.file_with_content(collection_id, content_hash)
        if existing is None:  # deleted meanwhile: try once more
            return self.add_file(collection_id, owner, name, content_hash, data, pages, meter)
        if existing["status"] != "failed":
            return existing, False
        with self.engine.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.file_id == existing["id"]))
            conn.execute(jobs.insert().values(file_id=existing["id"], data=data, meter=pickle.dumps(meter)))
            conn.execute(files.update().where(files.c.id == existing["id"]).values(
                name=name, status="queued", error=None, attempts=0, done_chunks=0, lease_owner=None,
                lease_until=None, updated_at=now))
        return self.file(existing["id"]), True

    def file_with_content(self, collection_id: str, content_hash: str) -> dict | None:
        """Return the file of ``collection_id`` holding this content, if there is one."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(files).where(files.c.collection_id == collection_id,
                                                      files.c.content_hash == content_hash)).first()
        return None if row is None else file_view(row)

    def file(self, file_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(files).where(files.c.id == file_id)).first()
        return None if row is None else file_view(row)

    def present_files(self, file_ids: set[str]) -> set[str]:
        """Return those of ``file_ids`` that still exist."""
        if not file_ids:
            return set()
        with self.engine.connect() as conn:
            return {r.id for r in conn.execute(sa.select(files.c.id).where(files.c.id.in_(list(file_ids))))}

    def files_of(self, collection_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(files).where(files.c.collection_id == collection_id)
                                .order_by(files.c.created_at))
            return [file_view(r) for r in rows]

    # --- the ingestion job's side ------------------------------------------------------------------
    def job(self, file_id: str) -> tuple[bytes, object] | None:
        """Return (the file's bytes, its metered call) while its job exists."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.file_id == file_id)).first()
        return None if row is None else (row.data, pickle.loads(row.meter) if row.meter else None)

    def claim(self, file_id: str, holder: str, lease: float):
        """Take the file's job for ``holder`` until ``lease`` seconds from now, when it is queued
        or its last holder's lease ran out; return the file's row, or None when another holds it
        (or it is ready, failed or gone)."""
        now = time.time()
        free = sa.or_(files.c.status == "queued", sa.and_(files.c.status == "processing", _lease_over(now)))
        with self.engine.begin() as conn:
            taken = conn.execute(files.update().where(files.c.id == file_id, free).values(
                status="processing", lease_owner=holder, lease_until=now + lease, attempts=files.c.attempts + 1,
                done_chunks=0, error=None, updated_at=now)).rowcount
            return conn.execute(sa.select(files).where(files.c.id == file_id)).first() if taken else None

    def _held(self, file_id: str, holder: str):
        return sa.and_(files.c.id == file_id, files.c.lease_owner == holder, files.c.status == "processing")

    def renew(self, file_id: str, holder: str, lease: float, **values) -> bool:
        """Extend ``holder``'s lease (and set ``values``: progress); False when it is no longer
        theirs (taken up by another worker, or the file deleted)."""
        now = time.time()
        with self.engine.begin() as conn:
            return conn.execute(files.update().where(self._held(file_id, holder)).values(
                lease_until=now + lease, updated_at=now, **values)).rowcount == 1

    def finish(self, file_id: str, holder: str, status: str, error: str | None = None, **values) -> bool:
        """End ``holder``'s job as ``ready``, ``failed`` (with ``error``) or ``queued`` (given
        back, to be taken up again); a ready file's job row goes. False when not theirs."""
        with self.engine.begin() as conn:
            done = conn.execute(files.update().where(self._held(file_id, holder)).values(
                status=status, error=error, lease_owner=None, lease_until=None, updated_at=time.time(),
                **values)).rowcount == 1
            if done and status == "ready":
                conn.execute(jobs.delete().where(jobs.c.file_id == file_id))
            return done

    def fail(self, file_id: str, error: str) -> None:
        """Mark a file ``failed`` whoever held it (its attempts are spent)."""
        with self.engine.begin() as conn:
            conn.execute(files.update().where(files.c.id == file_id, files.c.status.in_(("queued", "processing")))
                         .values(status="failed", error=error, lease_owner=None, lease_until=None,
                                 updated_at=time.time()))

    def retry(self, file_id: str) -> bool:
        """Queue a failed file again from its first attempt; False when it is not failed or
        its job is gone."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(jobs.c.file_id).where(jobs.c.file_id == file_id)).first() is None:
                return False
            return conn.execute(files.update().where(files.c.id == file_id, files.c.status == "failed").values(
                status="queued", error=None, attempts=0, done_chunks=0, updated_at=time.time())).rowcount == 1

    def stranded(self, queued_for: float) -> list[dict]:
        """Return the files whose job may have been lost: ``processing`` past their lease (the
        worker died), or ``queued`` untouched for ``queued_for`` seconds."""
        now = time.time()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(files.c.id, files.c.attempts, files.c.status).where(sa.or_(
                sa.and_(files.c.status == "processing", _lease_over(now)),
                sa.and_(files.c.status == "queued", files.c.updated_at < now - queued_for))))
            return [{"id": r.id, "attempts": r.attempts, "status": r.status} for r in rows]

    def touch(self, file_id: str) -> None:
        """Note that a queued file's job was just enqueued again."""
        with self.engine.begin() as conn:
            conn.execute(files.update().where(files.c.id == file_id, files.c.status == "queued")
                         .values(updated_at=time.time()))

    def delete_file(self, file_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.file_id == file_id))
            conn.execute(files.delete().where(files.c.id == file_id))
