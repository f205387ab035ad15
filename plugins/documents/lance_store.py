"""LanceDB, the default store: files on local disk, no server, safe for several worker processes.

One table per collection, so the owner filter is which tables a query opens: a query over the
caller's collections reads their chunks and no one else's, and costs what their size costs, not
the deployment's. (With one table for all, a filtered query read every chunk's vector: past
50,000 chunks a flat scan of 70 ms at 100,000, however few of them were the caller's.)

It speaks LanceDB's asynchronous API on an event loop of its own: a hybrid query's halves over
every collection go out together and come back in one wait (LanceDB's engine leaves the GIL),
and each costs one call into the engine, where the synchronous API made six."""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from datetime import timedelta

from .stores import PAYLOAD, VectorStore, _hit, fused, hybrid_depth

log = logging.getLogger("agent_portal.documents")
PREFIX = "chunks."  # a collection's table
HASHED_PREFIX = "chunks-sha256."  # ... when its id is not plain
LEGACY_TABLE = "chunks"  # every collection in one table, before tables per collection
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def table_name(collection_id: str) -> str:
    """Return the table of ``collection_id``: its id as is when it is plain (the catalog's are
    hex), else its SHA-256, so no id can name another's table, leave the folder or outgrow a
    file name."""
    if _PLAIN_ID.fullmatch(collection_id):
        return PREFIX + collection_id
    return HASHED_PREFIX + hashlib.sha256(collection_id.encode()).hexdigest()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LanceStore(VectorStore):
    """LanceDB in the directory ``path``: a table of chunks per collection."""

    full_text_index = True
    OPEN_TABLES = 512  # kept open (each holds its index caches); the least recently used closes
    QUERIES_AT_ONCE = 8  # per store: a query over hundreds of collections waits its turn per table
    SPLIT_BATCH_ROWS = 10_000  # rows read at a time from a store written as one table

    def __init__(self, path: str, dimensions: int):
        import lancedb
        import pyarrow as pa

        os.makedirs(path, exist_ok=True)
        self.path = path
        self.schema = pa.schema([
            pa.field("vector", pa.list_(pa.float32(), dimensions)), pa.field("collection_id", pa.string()),
            pa.field("file_id", pa.string()), pa.field("file_name", pa.string()),
            pa.field("chunk_index", pa.int32()), pa.field("page", pa.int32()), pa.field("heading", pa.string()),
            pa.field("text", pa.string())])
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="lance-store", daemon=True).start()
        # the job worker writes, serving workers read: every read looks for the newest version
        self.db = self._run(lancedb.connect_async(path, read_consistency_interval=timedelta(0)))
        # table name -> its open table, the most recently used last (touched on the loop only)
        self._open: OrderedDict[str, object] = OrderedDict()
        self._queries_at_once = asyncio.Semaphore(self.QUERIES_AT_ONCE)  # made here, used on the loop
        self._lock = threading.Lock()  # one writer at a time in this process
        if LEGACY_TABLE in self._run(self._table_names()):
            self._split_the_single_table()

    def _run(self, coroutine):
        """Return what ``coroutine`` returns, run on the store's loop (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _table_names(self) -> list[str]:
        names, token = [], None
        while True:
            page = await self.db.list_tables(page_token=token, limit=1000)
            names += page.tables
            token = page.page_token
            if not token:
                return names

    async def _chunk_tables(self) -> list[str]:
        return [n for n in await self._table_names() if n.startswith((PREFIX, HASHED_PREFIX))]

    async def _with_table(self, name: str, use, create: bool = False):
        """Return what ``use(table)`` returns for the table ``name`` (``None`` when it is not there
        and ``create`` is false). Every use goes through here: with at most QUERIES_AT_ONCE in use
        and at least as many kept open, a table is never closed under a query."""
        async with self._queries_at_once:
            table = await self._table(name, create)
            return None if table is None else await use(table)

    async def _table(self, name: str, create: bool = False):
        """Return the open table ``name``; ``None`` when it is not there and ``create`` is false."""
        table = self._open.get(name)
        if table is not None:
            self._open.move_to_end(name)
            return table
        try:
            table = await self.db.open_table(name)
        except (ValueError, FileNotFoundError):  # no chunk of that collection yet
            if not create:
                return None
            table = await self.db.create_table(name, schema=self.schema, exist_ok=True)
            await self._index_words(table)
        self._open[name] = table
        while len(self._open) > self.OPEN_TABLES:
            self._open.popitem(last=False)[1].close()
        return table

    @staticmethod
    async def _index_words(table) -> None:
        if not any(index.index_type == "FTS" for index in await table.list_indices()):
            from lancedb.index import FTS

            try:  # the chunks' words, BM25 (stemmed, stop words out); new rows are searched unindexed
                await table.create_index("text", config=FTS(), replace=False)
            except (ValueError, RuntimeError):
                pass  # another worker process made it first

    def add(self, rows: list[dict]) -> None:
        by_collection: dict[str, list[dict]] = {}
        for r in rows:
            by_collection.setdefault(r["collection_id"], []).append(
                {**r, "page": -1 if r.get("page") is None else r["page"], "heading": r.get("heading") or ""})
        with self._lock:
            for collection_id, part in by_collection.items():
                self._run(self._with_table(table_name(collection_id), lambda table: self._add_to(table, part),
                                           create=True))

    @staticmethod
    async def _add_to(table, rows: list[dict]) -> None:
        await table.add(rows)
        # the full-text index takes the rows in at once (a file's, the pipeline adds them in one
        # write): rows it has not taken in are scanned flat, which at 2,000 rows made a BM25 query
        # 95 ms instead of 9, and a collection's table may never grow past a threshold; ~0.1 s a file
        try:
            await table.optimize()
        except (OSError, RuntimeError, ValueError) as exc:  # another writer's commit won: next time
            log.warning("documents: the store's indexes could not take in new rows yet: %s", exc)

    async def _each_collection(self, collection_ids: list[str], ask) -> list[dict]:
        """Return the rows ``ask(table)`` finds in each of ``collection_ids``' tables, together."""
        found = await asyncio.gather(*(self._with_table(table_name(c), ask) for c in dict.fromkeys(collection_ids)))
        return [row for rows in found if rows for row in rows]

    async def _nearest(self, vector, k, collection_ids) -> list:
        async def ask(table):
            found = await table.vector_search(vector).distance_type("cosine").select([*PAYLOAD, "_distance"]).limit(k).to_arrow()
            return found.to_pylist()

        found = await self._each_collection(collection_ids, ask)
        found.sort(key=lambda row: (row["_distance"], row["file_id"], row["chunk_index"]))
        return [_hit(row, 1.0 - row["_distance"]) for row in found[:k]]

    async def _words(self, text, k, collection_ids) -> list:
        async def ask(table):  # BM25 within each collection (its own word statistics)
            found = await table.query().nearest_to_text(text, columns="text").select([*PAYLOAD, "_score"]).limit(k).to_arrow()
            return found.to_pylist()

        found = await self._each_collection(collection_ids, ask)
        found.sort(key=lambda row: (-row["_score"], row["file_id"], row["chunk_index"]))
        return [_hit(row, row["_score"]) for row in found[:k]]

    def search(self, vector, k, collection_ids):
        return self._run(self._nearest(vector, k, collection_ids))

    def full_text(self, text, k, collection_ids):
        return self._run(self._words(text, k, collection_ids))

    def query(self, vector, text, k, collection_ids, mode):
        if mode != "hybrid" or not text.strip():
            return super().query(vector, text, k, collection_ids, mode)
        depth = hybrid_depth(k)

        async def both():
            return await asyncio.gather(self._nearest(vector, depth, collection_ids),
                                        self._words(text, depth, collection_ids))

        return fused(self._run(both()), k)

    def delete_file(self, file_id: str, collection_id: str | None = None) -> None:
        with self._lock:
            self._run(self._delete_file(file_id, collection_id))

    async def _delete_file(self, file_id, collection_id) -> None:
        names = [table_name(collection_id)] if collection_id is not None else await self._chunk_tables()
        where = f"file_id = {_literal(file_id)}"

        async def delete(table):
            # a delete that removes nothing still writes a version: look first
            if await table.count_rows(where):
                await table.delete(where)

        for name in names:
            await self._with_table(name, delete)

    def count(self) -> int:
        async def total():
            counts = await asyncio.gather(*(self._with_table(name, lambda table: table.count_rows())
                                            for name in await self._chunk_tables()))
            return sum(c for c in counts if c)

        return self._run(total())

    def _split_the_single_table(self) -> None:
        """Move the chunks of a store written before tables per collection into their tables, once:
        under a lock every process of the machine takes, each collection's table written whole
        (again, if a process died midway), and the old table dropped last."""
        with open(os.path.join(self.path, ".layout.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._run(self._split())

    async def _split(self) -> None:
        import pyarrow as pa

        if LEGACY_TABLE not in await self._table_names():
            return  # another process moved them while this one waited
        old = await self.db.open_table(LEGACY_TABLE)
        collections = sorted(set((await old.query().select(["collection_id"]).to_arrow())["collection_id"].to_pylist()))
        for collection_id in collections:
            name, table = table_name(collection_id), None
            # a batch at a time, so a large collection is never in memory whole
            rows = await old.query().where(f"collection_id = {_literal(collection_id)}").select(
                self.schema.names).to_batches(max_batch_length=self.SPLIT_BATCH_ROWS)
            async for batch in rows:
                part = pa.Table.from_batches([batch]).select(self.schema.names).cast(self.schema)
                if table is None:  # written whole again if a process died midway
                    table = await self.db.create_table(name, data=part, schema=self.schema, mode="overwrite")
                else:
                    await table.add(part)
            await self._index_words(table)
            await table.optimize()
        total = await old.count_rows()
        await self.db.drop_table(LEGACY_TABLE)
        log.info("documents: %d chunks moved into %d collection tables", total, len(collections))
