"""Vector stores behind one interface: LanceDB (embedded, the default: lance_store, a table per
collection), pgvector (pgvector_store: the PostgreSQL a deployment already shares) and Qdrant
(its local mode, or a server or cluster). Every search filters by collection inside the store's
own query, never after its top-k.

A query is dense (the embedding's nearest chunks), full text (BM25 over the chunks' words: LanceDB's
index, Qdrant's sparse vectors with IDF, PostgreSQL's tsvector in pgvector_store) or hybrid: both halves, each filtered, fused by
reciprocal rank fusion (:func:`fused`), so an exact name a question shares with one chunk counts
beside what the embedding finds near it."""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, replace

from .words import document_terms, query_terms

PAYLOAD = ("collection_id", "file_id", "file_name", "chunk_index", "page", "heading", "text")
MODES = ("hybrid", "dense", "full_text")
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.): a rank r counts 1 / (RRF_K + r)
_EXECUTOR_LOCK = threading.Lock()


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

    full_text_index = False  # whether :meth:`full_text` is there

    def search(self, vector: list[float], k: int, collection_ids: list[str]) -> list[Hit]:
        """Return the ``k`` nearest chunks among ``collection_ids`` (cosine; best first)."""
        raise NotImplementedError

    def full_text(self, text: str, k: int, collection_ids: list[str]) -> list[Hit]:
        """Return the ``k`` chunks among ``collection_ids`` that best match ``text``'s words (BM25)."""
        raise NotImplementedError

    def query(self, vector: list[float], text: str, k: int, collection_ids: list[str], mode: str) -> list[Hit]:
        """Return the ``k`` best chunks among ``collection_ids`` for ``mode`` (see :data:`MODES`);
        a store without a full-text index answers every mode densely."""
        if mode == "dense" or not self.full_text_index or not text.strip():
            return self.search(vector, k, collection_ids)
        if mode == "full_text":
            return self.full_text(text, k, collection_ids)
        depth = hybrid_depth(k)
        if not self.parallel_halves:
            return fused([self.search(vector, depth, collection_ids), self.full_text(text, depth, collection_ids)], k)
        words = self._halves().submit(self.full_text, text, depth, collection_ids)  # beside the dense half
        nearest = self.search(vector, depth, collection_ids)
        return fused([nearest, words.result()], k)

    # whether the two halves of a hybrid query may run at once, in two threads (the store is
    # thread-safe, and its query leaves the GIL: LanceDB's engine, a database or a server)
    parallel_halves = False

    def _halves(self):
        with _EXECUTOR_LOCK:
            if getattr(self, "_executor", None) is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="full-text-half")
            return self._executor

    def delete_file(self, file_id: str, collection_id: str | None = None) -> None:
        """Remove the chunks of ``file_id`` (in ``collection_id``, when the caller knows it)."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError


def _hit(payload: dict, score: float) -> Hit:
    return Hit(text=payload["text"], score=float(score), collection_id=payload["collection_id"],
               file_id=payload["file_id"], file_name=payload["file_name"],
               page=payload.get("page") if payload.get("page") not in (None, -1) else None,
               heading=payload.get("heading") or None, chunk_index=int(payload["chunk_index"]))


def hybrid_depth(k: int) -> int:
    """Return how deep each half of a hybrid query ranks for the best ``k``: deeper than ``k``, so
    a chunk second in both halves can win."""
    return max(4 * k, 40)


def fused(rankings: list[list[Hit]], k: int) -> list[Hit]:
    """Return the ``k`` best chunks of several rankings by reciprocal rank fusion, each with its
    fused score (the sum of 1 / (60 + rank) over the rankings that hold it)."""
    scores: dict[tuple, float] = {}
    hits: dict[tuple, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            key = (hit.file_id, hit.chunk_index)
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            hits.setdefault(key, hit)
    best = sorted(scores, key=lambda key: (-scores[key], key))[:k]
    return [replace(hits[key], score=scores[key]) for key in best]


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
        words = {self.WORDS: models.SparseVectorParams(modifier=models.Modifier.IDF)}
        if not self.client.collection_exists(self.COLLECTION):
            self.client.create_collection(self.COLLECTION, vectors_config=models.VectorParams(
                size=dimensions, distance=models.Distance.COSINE), sparse_vectors_config=words)
            if url:  # a server filters with its payload indexes; the local mode has none
                for field in ("collection_id", "file_id"):
                    self.client.create_payload_index(self.COLLECTION, field, models.PayloadSchemaType.KEYWORD)
        # a collection made before the full-text half has no sparse vectors: dense only, until
        # it is made again (its chunks would have none to search anyway)
        sparse = self.client.get_collection(self.COLLECTION).config.params.sparse_vectors or {}
        self.full_text_index = self.WORDS in sparse
        self.parallel_halves = bool(url)  # a server answers both at once; the local mode is one Python process

    WORDS = "words"  # the sparse vector of each chunk's words (words.document_terms), IDF by Qdrant

    def add(self, rows):
        if rows:
            points = []
            for r in rows:
                vector = {"": r["vector"]}
                ids, weights = document_terms(r["text"]) if self.full_text_index else ([], [])
                if ids:
                    vector[self.WORDS] = self.models.SparseVector(indices=ids, values=weights)
                points.append(self.models.PointStruct(id=str(uuid.uuid4()), vector=vector,
                                                      payload={k: r.get(k) for k in PAYLOAD}))
            self.client.upsert(self.COLLECTION, points=points, wait=True)

    def full_text(self, text, k, collection_ids):
        ids, weights = query_terms(text)
        if not collection_ids or not ids:
            return []
        found = self.client.query_points(self.COLLECTION, query=self.models.SparseVector(indices=ids, values=weights),
                                         using=self.WORDS, query_filter=self._in(collection_ids), limit=k,
                                         with_payload=True).points
        return [_hit(point.payload, point.score) for point in found]

    def _in(self, collection_ids):
        return self.models.Filter(must=[self.models.FieldCondition(
            key="collection_id", match=self.models.MatchAny(any=list(collection_ids)))])

    def search(self, vector, k, collection_ids):
        if not collection_ids:
            return []
        found = self.client.query_points(self.COLLECTION, query=vector, query_filter=self._in(collection_ids),
                                         limit=k, with_payload=True).points
        return [_hit(point.payload, point.score) for point in found]

    def delete_file(self, file_id, collection_id=None):
        flt = self.models.Filter(must=[self.models.FieldCondition(key="file_id",
                                                                  match=self.models.MatchValue(value=file_id))])
        self.client.delete(self.COLLECTION, points_selector=self.models.FilterSelector(filter=flt), wait=True)

    def count(self):
        return self.client.count(self.COLLECTION, exact=True).count


def make_store(spec: dict, dimensions: int) -> VectorStore:
    """Return the store ``plugins.documents.store`` names."""
    if spec["kind"] == "pgvector":
        from .pgvector_store import PgVectorStore

        return PgVectorStore(spec["url"], dimensions)
    if spec["kind"] == "qdrant":
        return QdrantStore(dimensions, url=spec.get("url"), api_key=spec.get("api_key"), path=spec.get("path"))
    from .lance_store import LanceStore

    return LanceStore(spec["path"], dimensions)
