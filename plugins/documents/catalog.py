"""Collections, who may read them, and their files, in the portal's database.

A collection belongs to the user who made it; its owner or an admin may share it with roles
and with named users. Everyone else is told it does not exist (404).
"""
from __future__ import annotations

import json
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
    sa.Column("status", sa.String(16), nullable=False),  # processing, ready, failed
    sa.Column("pages", sa.Integer),
    sa.Column("chunks", sa.Integer, nullable=False, default=0),
    sa.Column("done_chunks", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("collection_id", "content_hash", name="uq_portal_doc_files_content"),
)


def _collection(row) -> dict:
    return {"id": row.id, "name": row.name, "description": row.description, "owner": row.owner,
            "shared_with": {"roles": json.loads(row.shared_roles), "users": json.loads(row.shared_users)},
            "created_at": row.created_at}


def file_view(row) -> dict:
    return {"id": row.id, "collection_id": row.collection_id, "name": row.name, "status": row.status,
            "size": row.size, "pages": row.pages, "chunks": row.chunks,
            "progress": round(row.done_chunks / row.chunks, 3) if row.chunks else (1.0 if row.status == "ready" else 0.0),
            "error": row.error, "created_at": row.created_at}


class Catalog:
    """Collections and files in the portal's database."""

    def __init__(self, engine):
        self.engine = engine
        create_tables(engine, metadata)

    # --- collections -------------------------------------------------------------------------------
    def create_collection(self, owner: str, name: str, description: str) -> dict | None:
        """Return the new collection, or None when ``owner`` already has one of that name."""
        row = {"id": uuid.uuid4().hex, "name": name, "description": description, "owner": owner,
               "shared_roles": "[]", "shared_users": "[]", "created_at": time.time()}
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
        """Return the collections ``actor`` may read: their own, those shared with their role or
        with them by name; every collection for an admin. Own ones first, then by age."""
        with self.engine.connect() as conn:
            rows = [_collection(r) for r in conn.execute(sa.select(collections).order_by(collections.c.created_at))]
        if actor.role == "admin":
            return sorted(rows, key=lambda c: c["owner"] != actor.id)
        mine = [c for c in rows if c["owner"] == actor.id]
        shared = [c for c in rows if c["owner"] != actor.id and (actor.role in c["shared_with"]["roles"]
                                                                  or actor.id in c["shared_with"]["users"])]
        return mine + shared

    def share(self, collection_id: str, roles: list[str], users: list[str]) -> dict:
        with self.engine.begin() as conn:
            conn.execute(collections.update().where(collections.c.id == collection_id).values(
                shared_roles=json.dumps(sorted(set(roles))), shared_users=json.dumps(sorted(set(users)))))
        return self.collection(collection_id)

    def delete_collection(self, collection_id: str) -> list[str]:
        """Delete the collection and its files' rows; returns the file ids (their chunks go next)."""
        with self.engine.begin() as conn:
            ids = [r.id for r in conn.execute(sa.select(files.c.id).where(files.c.collection_id == collection_id))]
            conn.execute(files.delete().where(files.c.collection_id == collection_id))
            conn.execute(collections.delete().where(collections.c.id == collection_id))
        return ids

    # --- files -----------------------------------------------------------------------------------------
    def add_file(self, collection_id: str, owner: str, name: str, content_hash: str, size: int,
                 pages: int | None, chunks: int) -> tuple[dict, bool]:
        """Return (the file, True) when new; (the file already holding this content, False)."""
        row = {"id": uuid.uuid4().hex, "collection_id": collection_id, "name": name, "content_hash": content_hash,
               "size": size, "status": "processing", "pages": pages, "chunks": chunks, "done_chunks": 0,
               "error": None, "owner": owner, "created_at": time.time()}
        try:
            with self.engine.begin() as conn:
                conn.execute(files.insert().values(**row))
            return self.file(row["id"]), True
        except sa.exc.IntegrityError:
            with self.engine.connect() as conn:
                existing = conn.execute(sa.select(files).where(files.c.collection_id == collection_id,
                                                               files.c.content_hash == content_hash)).first()
            return file_view(existing), False

    def file(self, file_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(files).where(files.c.id == file_id)).first()
        return None if row is None else file_view(row)

    def files_of(self, collection_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(files).where(files.c.collection_id == collection_id)
                                .order_by(files.c.created_at))
            return [file_view(r) for r in rows]

    def progress(self, file_id: str, done_chunks: int, status: str = "processing", error: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(files.update().where(files.c.id == file_id).values(done_chunks=done_chunks, status=status,
                                                                            error=error))

    def delete_file(self, file_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(files.delete().where(files.c.id == file_id))
