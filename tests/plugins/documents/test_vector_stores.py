"""One contract for every vector store the documents plugin can use, run against each one this
machine has: LanceDB (embedded), Qdrant in memory and Qdrant's local mode on disk. (A Qdrant
server speaks the same client API; none runs here.)"""
from __future__ import annotations

import math
import random

import pytest

from agent_portal.plugins.documents.stores import LanceStore, QdrantStore

DIMENSIONS = 8


@pytest.fixture(params=["lancedb", "qdrant-memory", "qdrant-local"])
def store(request, tmp_path):
    if request.param == "lancedb":
        return LanceStore(str(tmp_path / "lance"), DIMENSIONS)
    path = ":memory:" if request.param == "qdrant-memory" else str(tmp_path / "qdrant")
    return QdrantStore(DIMENSIONS, path=path)


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def row(vector, collection="c1", file_id="f1", index=0, page=None, heading=None, text="t"):
    return {"vector": unit(vector), "collection_id": collection, "file_id": file_id, "file_name": f"{file_id}.pdf",
            "chunk_index": index, "page": page, "heading": heading, "text": text}


def test_the_nearest_chunks_come_first_with_their_payload(store):
    store.add([row([1, 0, 0, 0, 0, 0, 0, 0], index=0, page=3, heading="Intro", text="exact"),
               row([1, 1, 0, 0, 0, 0, 0, 0], index=1, text="near"),
               row([0, 0, 0, 0, 0, 0, 0, 1], index=2, text="far")])
    hits = store.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 3, ["c1"])
    assert [h.text for h in hits] == ["exact", "near", "far"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5) and hits[0].score > hits[1].score > hits[2].score
    first = hits[0]
    assert (first.page, first.heading, first.file_id, first.file_name, first.chunk_index) == (3, "Intro", "f1", "f1.pdf", 0)
    assert (hits[1].page, hits[1].heading) == (None, None)


def test_the_collection_filter_is_applied_before_the_top_k(store):
    rng = random.Random(7)
    crowd = [row([1, rng.random() * 0.01, 0, 0, 0, 0, 0, 0], collection="crowd", index=i) for i in range(50)]
    store.add(crowd + [row([0, 0, 0, 0, 0, 0, 1, 0], collection="mine", file_id="f2", text="only mine")])
    hits = store.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 5, ["mine"])
    assert [h.text for h in hits] == ["only mine"]
    assert len(store.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 5, ["crowd", "mine"])) == 5
    assert store.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 5, []) == []
    assert store.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 5, ["nobody's", "o'brien"]) == []


def test_deleting_a_file_removes_its_chunks_only(store):
    store.add([row([1, 0, 0, 0, 0, 0, 0, 0], file_id="keep"), row([1, 0, 0, 0, 0, 0, 0, 0], file_id="drop", index=1),
               row([0, 1, 0, 0, 0, 0, 0, 0], file_id="drop", index=2)])
    assert store.count() == 3
    store.delete_file("drop")
    assert store.count() == 1
    assert [h.file_id for h in store.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 5, ["c1"])] == ["keep"]
    store.delete_file("it's not there")
    assert store.count() == 1


def test_a_lancedb_reader_sees_what_another_process_wrote_after_it_opened(tmp_path):
    reader = LanceStore(str(tmp_path / "lance"), DIMENSIONS)
    assert reader.count() == 0
    writer = LanceStore(str(tmp_path / "lance"), DIMENSIONS)  # the job worker's, in its own process
    writer.add([row([1, 0, 0, 0, 0, 0, 0, 0], index=0), row([0, 1, 0, 0, 0, 0, 0, 0], index=1)])
    assert reader.count() == 2
    assert [h.chunk_index for h in reader.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 1, ["c1"])] == [0]
