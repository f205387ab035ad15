"""LanceDB, the default store: files on local disk, no server, safe for several worker processes.

One table per collection, so the owner filter is which tables a query opens: a query over the
caller's collections reads their chunks and no one else's, and costs what their size costs, not
the deployment's. (With one table for all, a filtered query read every chunk's vector: past
50,000 chunks a flat scan of 70 ms at 100,000, however few of them were the caller's.)"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from .stores import VectorStore, _hit

log = logging.getLogger("agent_portal.documents")
PREFIX = "chunks."  # a collection's table; "chunks-sha256." when its id is not plain
LEGACY_TABLE = "chunks"  # every collection in one table, before tables per collection
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def table_name(collection_id: str) -> str:
    """Return the table of ``collection_id``: its id as is when it is plain (the catalog's are
    hex), else its SHA-256, so no id can name another's table, leave the folder or outgrow a
    file name."""
    if _PLAIN_ID.fullmatch(collection_id):
        return PREFIX + collection_id
    return "chunks-sha256." + hashlib.sha256(collection_id.encode()).hexdigest()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LanceStore(VectorStore):
    """LanceDB in the directory ``path``: a table of chunks per collection."""

    full_text_index = True
    parallel_halves = True
    # rows added before the full-text index takes them in: until then they are scanned flat, which
    # at 2,000 rows made a BM25 query 95 ms instead of 9; taking in a file's rows costs ~0.1 s
    OPTIMIZE_EVERY_ROWS = 200

    def __init__(self, path: str, dimensions: int):
        import lancedb
        import pyarrow as pa

        os.makedirs(path, exist_ok=True)
        self.path = path
        # the job worker writes, serving workers read: every read looks for the newest version
        self.db = lancedb.connect(path, read_consistency_interval=timedelta(0))
        self.schema = pa.schema([
            pa.field("vector", pa.list_(pa.float32(), dimensions)), pa.field("collection_id", pa.string()),
            pa.field("file_id", pa.string()), pa.field("file_name", pa.string()),
            pa.field("chunk_index", pa.int32()), pa.field("page", pa.int32()), pa.field("heading", pa.string()),
            pa.field("text", pa.string())])
        self._open: dict[str, object] = {}  # table name -> its open table (reads see new versions)
        self._lock = threading.Lock()  # one writer at a time in this process
        self._added_since_optimize: dict[str, int] = {}
        # several collections' tables are searched at once (LanceDB's engine leaves the GIL)
        self._fan_out = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lance-collections")
        if LEGACY_TABLE in self._table_names():
            self._split_the_single_table()

    def _table_names(self) -> list[str]:
        names, token = [], None
        while True:
            page = self.db.list_tables(page_token=token, limit=1000)
            names += page.tables
            token = page.page_token
            if not token:
                return names

    def _chunk_tables(self) -> list[str]:
        return [n for n in self._table_names() if n.startswith((PREFIX, "chunks-sha256."))]

    def _table(self, name: str, create: bool = False):
        """Return the open table ``name``; ``None`` when it is not there and ``create`` is false."""
        table = self._open.get(name)
        if table is None:
            try:
                table = self.db.open_table(name)
            except (ValueError, FileNotFoundError):  # no chunk of that collection yet
                if not create:
                    return None
                table = self.db.create_table(name, schema=self.schema, exist_ok=True)
                self._index_words(table)
            self._open[name] = table
        return table

    @staticmethod
    def _index_words(table) -> None:
        if not any(index.index_type == "FTS" for index in table.list_indices()):
            from lancedb.index import FTS

            try:  # the chunks' words, BM25 (stemmed, stop words out); new rows are searched unindexed
                table.create_index("text", config=FTS(), replace=False)
            except (ValueError, RuntimeError):
                pass  # another worker process made it first

    def add(self, rows: list[dict]) -> None:
        by_collection: dict[str, list[dict]] = {}
        for r in rows:
            by_collection.setdefault(r["collection_id"], []).append(
                {**r, "page": -1 if r.get("page") is None else r["page"], "heading": r.get("heading") or ""})
        with self._lock:
            for collection_id, part in by_collection.items():
                name = table_name(collection_id)
                table = self._table(name, create=True)
                table.add(part)
                added = self._added_since_optimize.get(name, 0) + len(part)
                if added >= self.OPTIMIZE_EVERY_ROWS:
                    try:
                        table.optimize()
                        added = 0
                    except (OSError, RuntimeError, ValueError) as exc:  # another writer's commit won: next time
                        log.warning("documents: the store's indexes could not take in new rows yet: %s", exc)
                self._added_since_optimize[name] = added

    def _each_collection(self, collection_ids: list[str], ask) -> list[dict]:
        """Return the rows ``ask(table)`` finds in each of ``collection_ids``' tables, together."""
        tables = [t for t in (self._table(table_name(c)) for c in dict.fromkeys(collection_ids)) if t is not None]
        if len(tables) == 1:
            return ask(tables[0])
        return [row for found in self._fan_out.map(ask, tables) for row in found]

    def full_text(self, text, k, collection_ids):
        # BM25 within each collection (its own word statistics), the best of them together
        found = self._each_collection(collection_ids, lambda table: table.search(
            text, query_type="fts", fts_columns="text").limit(k).to_list())
        found.sort(key=lambda row: (-row["_score"], row["file_id"], row["chunk_index"]))
        return [_hit(row, row["_score"]) for row in found[:k]]

    def search(self, vector, k, collection_ids):
        found = self._each_collection(collection_ids, lambda table: table.search(
            vector).metric("cosine").limit(k).to_list())
        found.sort(key=lambda row: (row["_distance"], row["file_id"], row["chunk_index"]))
        return [_hit(row, 1.0 - row["_distance"]) for row in found[:k]]

    def delete_file(self, file_id: str, collection_id: str | None = None) -> None:
        names = [table_name(collection_id)] if collection_id is not None else self._chunk_tables()
        where = f"file_id = {_literal(file_id)}"
        with self._lock:
            for name in names:
                table = self._table(name)
                # a delete that removes nothing still writes a version: look first
                if table is not None and (collection_id is not None or table.count_rows(where)):
                    table.delete(where)

    def count(self) -> int:
        return sum(self._table(name).count_rows() for name in self._chunk_tables())

    def _split_the_single_table(self) -> None:
        """Move the chunks of a store written before tables per collection into their tables, once:
        under a lock every process of the machine takes, each collection's table written whole
        (again, if a process died midway), and the old table dropped last."""
        with open(os.path.join(self.path, ".layout.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if LEGACY_TABLE not in self._table_names():
                return  # another process moved them while this one waited
            old = self.db.open_table(LEGACY_TABLE)
            total = old.count_rows()
            collections = set(old.search().select(["collection_id"]).limit(max(total, 1)).to_arrow()
                              ["collection_id"].to_pylist())
            for collection_id in sorted(collections):
                rows = (old.search().where(f"collection_id = {_literal(collection_id)}")
                        .select(self.schema.names).limit(total).to_arrow().select(self.schema.names))
                table = self.db.create_table(table_name(collection_id), data=rows.cast(self.schema),
                                             schema=self.schema, mode="overwrite")
                self._index_words(table)
                table.optimize()
            self.db.drop_table(LEGACY_TABLE)
            log.info("documents: %d chunks moved into %d collection tables", total, len(collections))
