"""Vector stores behind one interface: LanceDB (embedded, the default: files on local disk, no
server, safe for several worker processes) and Qdrant (its local mode, or a server or cluster
for deployments that outgrow one machine). Every search filters by collection inside the
store's own query, never after its top-k."""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta

PAYLOAD = ("collection_id", "file_id", "file_name", "chunk_index", "page", "heading", "text")


@dataclass
class Hit:
    text: str
    score: float
    collection_id: str
    file_id: str
    file_name: str
    page: int | None
    heading: str | None
    chunk_index: int


class VectorStore:
    """What every store does. ``rows`` are dicts with the ``PAYLOAD`` keys and a ``vector``."""

    def add(self, rows: list[dict]) -> None:
        raise NotImplementedError

    def search(self, vector: list[float], k: int, collection_ids: list[str]) -> list[Hit]:
        """Return the ``k`` nearest chunks among ``collection_ids`` (cosine; best first)."""
        raise NotImplementedError

    def delete_file(self, file_id: str) -> None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError


def _hit(payload: dict, score: float) -> Hit:
    return Hit(text=payload["text"], score=float(score), collection_id=payload["collection_id"],
               file_id=payload["file_id"], file_name=payload["file_name"],
               page=payload.get("page") if payload.get("page") not in (None, -1) else None,
               heading=payload.get("heading") or None, chunk_index=int(payload["chunk_index"]))


def _quoted(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


class LanceStore(VectorStore):
    """LanceDB in the directory ``path``: one table of chunks."""

    def __init__(self, path: str, dimensions: int):
        import lancedb
        import pyarrow as pa

        # the job worker writes, serving workers read: every read looks for the newest version
        self.db = lancedb.connect(path, read_consistency_interval=timedelta(0))
        self.schema = pa.schema([
            pa.field("vector", pa.list_(pa.float32(), dimensions)), pa.field("collection_id", pa.string()),
            pa.field("file_id", pa.string()), pa.field("file_name", pa.string()),
            pa.field("chunk_index", pa.int32()), pa.field("page", pa.int32()), pa.field("heading", pa.string()),
            pa.field("text", pa.string())])
        self.table = self.db.create_table("chunks", schema=self.schema, exist_ok=True)
        self._lock = threading.Lock()

    def add(self, rows: list[dict]) -> None:
        if rows:
            with self._lock:
                self.table.add([{**r, "page": -1 if r.get("page") is None else r["page"],
                                 "heading": r.get("heading") or ""} for r in rows])

    def search(self, vector, k, collection_ids):
        if not collection_ids:
            return []
        found = (self.table.search(vector).metric("cosine")
                 .where(f"collection_id IN ({_quoted(collection_ids)})", prefilter=True).limit(k).to_list())
        return [_hit(row, 1.0 - row["_distance"]) for row in found]

    def delete_file(self, file_id: str) -> None:
        with self._lock:
            self.table.delete(f"file_id = '{file_id.replace(chr(39), chr(39) * 2)}'")

    def count(self) -> int:
        return self.table.count_rows()


class QdrantStore(VectorStore):
    """Qdrant: ``url`` for a server or cluster, else its local mode in ``path`` (one process) or
    in memory (``path`` ``:memory:``)."""

    COLLECTION = "portal_chunks"

    def __init__(self, dimensions: int, url: str | None = None, api_key: str | None = None,
                 path: str | None = None):
        from qdrant_client import QdrantClient, models

        self.models = models
        if url:
            self.client = QdrantClient(url=url, api_key=api_key)
        elif path == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            self.client = QdrantClient(path=path)
        if not self.client.collection_exists(self.COLLECTION):
            self.client.create_collection(self.COLLECTION, vectors_config=models.VectorParams(
                size=dimensions, distance=models.Distance.COSINE))
            if url:  # a server filters with its payload indexes; the local mode has none
                for field in ("collection_id", "file_id"):
                    self.client.create_payload_index(self.COLLECTION, field, models.PayloadSchemaType.KEYWORD)

    def add(self, rows):
        if rows:
            points = [self.models.PointStruct(id=str(uuid.uuid4()), vector=r["vector"],
                                              payload={k: r.get(k) for k in PAYLOAD}) for r in rows]
            self.client.upsert(self.COLLECTION, points=points, wait=True)

    def search(self, vector, k, collection_ids):
        if not collection_ids:
            return []
        flt = self.models.Filter(must=[self.models.FieldCondition(
            key="collection_id", match=self.models.MatchAny(any=list(collection_ids)))])
        found = self.client.query_points(self.COLLECTION, query=vector, query_filter=flt, limit=k,
                                         with_payload=True).points
        return [_hit(point.payload, point.score) for point in found]

    def delete_file(self, file_id):
        flt = self.models.Filter(must=[self.models.FieldCondition(key="file_id",
                                                                  match=self.models.MatchValue(value=file_id))])
        self.client.delete(self.COLLECTION, points_selector=self.models.FilterSelector(filter=flt), wait=True)

    def count(self):
        return self.client.count(self.COLLECTION, exact=True).count


def make_store(spec: dict, dimensions: int) -> VectorStore:
    """Return the store ``plugins.documents.store`` names."""
    if spec["kind"] == "qdrant":
        return QdrantStore(dimensions, url=spec.get("url"), api_key=spec.get("api_key"), path=spec.get("path"))
    return LanceStore(spec["path"], dimensions)
