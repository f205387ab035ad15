"""One contract for every vector store the documents plugin can use, run against each one this
machine has: LanceDB (embedded), Qdrant in memory and Qdrant's local mode on disk, and pgvector
on a real PostgreSQL with the vector extension. (A Qdrant server speaks the same client API;
none runs here.)"""
from __future__ import annotations

import math
import random

import pytest

from agent_portal.plugins.documents.pgvector_store import PgVectorStore
from agent_portal.plugins.documents.lance_store import LanceStore
from agent_portal.plugins.documents.stores import QdrantStore

DIMENSIONS = 8


@pytest.fixture(params=["lancedb", "qdrant-memory", "qdrant-local", "pgvector"])
def store(request, tmp_path):
    if request.param == "lancedb":
        return LanceStore(str(tmp_path / "lance"), DIMENSIONS)
    if request.param == "pgvector":
        return PgVectorStore(request.getfixturevalue("pgvector_url"), DIMENSIONS)
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


def test_full_text_ranks_the_chunk_that_names_the_words_first(store):
    store.add([row([1, 0, 0, 0, 0, 0, 0, 0], index=0, text="json.dumps() serializes an object to a JSON string"),
                    row([0, 1, 0, 0, 0, 0, 0, 0], index=1, text="pickle turns objects into bytes"),
                    row([0, 0, 1, 0, 0, 0, 0, 0], index=2, text="the weather today")])
    hits = store.full_text("dumps() (in module json)", 5, ["c1"])
    assert [h.chunk_index for h in hits][:1] == [0] and 2 not in [h.chunk_index for h in hits]
    for hostile in ('AND OR NOT "quote', "a:b (x", "*", "' OR 1=1 --"):
        store.full_text(hostile, 5, ["c1"])  # no query language reaches the index


def test_twelve_closer_chunks_elsewhere_hide_no_far_chunk_of_the_callers_in_either_half(store):
    crowd = [row([1, 0.001 * i, 0, 0, 0, 0, 0, 0], collection="other-user", file_id="theirs", index=i,
                 text="retry backoff jitter retry backoff jitter") for i in range(12)]
    mine = row([0, 0, 0, 0, 0, 0, 0, 1], collection="mine", file_id="mine", text="a note on retry backoff")
    store.add(crowd + [mine])
    query = unit([1, 0, 0, 0, 0, 0, 0, 0])
    for mode in ("dense", "full_text", "hybrid"):
        hits = store.query(query, "retry backoff jitter", 5, ["mine"], mode)
        assert [h.file_id for h in hits] == ["mine"], mode


def test_hybrid_fuses_both_rankings_so_a_chunk_good_in_both_wins(store):
    store.add([row([1, 0, 0, 0, 0, 0, 0, 0], index=0, text="nearest by meaning, other words"),
                    row([0.9, 0.45, 0, 0, 0, 0, 0, 0], index=1, text="frobnicate settings of the widget"),
                    row([0, 1, 0, 0, 0, 0, 0, 0], index=2, text="frobnicate frobnicate frobnicate"),
                    row([0.8, 0.6, 0, 0, 0, 0, 0, 0], index=3, text="unrelated words here"),
                    row([0.8, 0.6, 0.1, 0, 0, 0, 0, 0], index=4, text="more unrelated words")])
    query = unit([1, 0, 0, 0, 0, 0, 0, 0])  # dense ranks 0, 1, 3, 4, 2; full text ranks 2, 1
    assert store.query(query, "frobnicate", 3, ["c1"], "dense")[0].chunk_index == 0
    assert store.query(query, "frobnicate", 3, ["c1"], "full_text")[0].chunk_index == 2
    assert store.query(query, "frobnicate", 3, ["c1"], "hybrid")[0].chunk_index == 1


def test_a_qdrant_collection_made_before_the_full_text_half_answers_every_mode_densely(tmp_path):
    from qdrant_client import QdrantClient, models

    old = QdrantClient(path=str(tmp_path / "qdrant"))
    old.create_collection(QdrantStore.COLLECTION, vectors_config=models.VectorParams(
        size=DIMENSIONS, distance=models.Distance.COSINE))
    old.close()
    store = QdrantStore(DIMENSIONS, path=str(tmp_path / "qdrant"))
    assert not store.full_text_index
    store.add([row([1, 0, 0, 0, 0, 0, 0, 0], index=0, text="alpha"), row([0, 1, 0, 0, 0, 0, 0, 0], index=1, text="beta")])
    assert [h.chunk_index for h in store.query(unit([0, 1, 0, 0, 0, 0, 0, 0]), "alpha", 2, ["c1"], "hybrid")] == [1, 0]


def test_deleting_a_file_in_a_named_collection_leaves_other_collections_alone(store):
    store.add([row([1, 0, 0, 0, 0, 0, 0, 0], collection="c1", file_id="same"),
               row([1, 0, 0, 0, 0, 0, 0, 0], collection="c2", file_id="other", index=1)])
    store.delete_file("same", "c1")
    assert store.count() == 1
    assert [h.file_id for h in store.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 5, ["c1", "c2"])] == ["other"]


def test_a_lancedb_collection_has_a_table_of_its_own_whatever_its_id(tmp_path):
    import lancedb

    from agent_portal.plugins.documents.lance_store import table_name

    store = LanceStore(str(tmp_path / "lance"), DIMENSIONS)
    odd = ["o'brien", "../../etc", "a.b", "x" * 200, "é"]
    store.add([row([1, 0, 0, 0, 0, 0, 0, 0], collection=c, file_id=f"f{i}", index=i) for i, c in enumerate(odd)]
              + [row([1, 0, 0, 0, 0, 0, 0, 0], collection="2f4e9c", file_id="plain")])
    names = set(lancedb.connect(str(tmp_path / "lance")).list_tables().tables)
    assert names == {table_name(c) for c in odd + ["2f4e9c"]} and "chunks.2f4e9c" in names and len(names) == 6
    assert sorted(p.name for p in (tmp_path / "lance").iterdir() if not p.name.startswith(".")) == sorted(
        n + ".lance" for n in names)  # every table inside the store's folder
    for i, collection in enumerate(odd):
        assert [h.file_id for h in store.query(unit([1, 0, 0, 0, 0, 0, 0, 0]), "t", 5, [collection], "hybrid")] \
            == [f"f{i}"]


def _single_table_store(path, rows):
    """Write ``rows`` the way the LanceDB store kept every collection before, in one table."""
    import lancedb

    schema = LanceStore(str(path / "probe"), DIMENSIONS).schema
    db = lancedb.connect(str(path / "lance"))
    db.create_table("chunks", data=[{**r, "page": r["page"] if r["page"] is not None else -1,
                                     "heading": r["heading"] or ""} for r in rows], schema=schema)
    return db


def test_a_lancedb_store_written_as_one_table_is_split_by_collection_when_opened(tmp_path):
    rows = [row([1, 0, 0, 0, 0, 0, 0, 0], collection="c1", file_id="a", index=0, page=2, heading="Intro",
                text="the budget for the cooling towers"),
            row([0, 1, 0, 0, 0, 0, 0, 0], collection="c1", file_id="a", index=1, text="night shift staffing"),
            row([1, 0, 0, 0, 0, 0, 0, 0], collection="o'brien", file_id="b", index=0, text="cooling budget")]
    db = _single_table_store(tmp_path, rows)
    store = LanceStore(str(tmp_path / "lance"), DIMENSIONS)
    assert "chunks" not in db.list_tables().tables and store.count() == 3
    mine = store.query(unit([1, 0, 0, 0, 0, 0, 0, 0]), "cooling budget", 5, ["c1"], "hybrid")
    assert [(h.file_id, h.chunk_index) for h in mine][0] == ("a", 0) and {h.file_id for h in mine} == {"a"}
    assert (mine[0].page, mine[0].heading) == (2, "Intro")
    assert [h.file_id for h in store.full_text("cooling", 5, ["o'brien"])] == ["b"]
    assert LanceStore(str(tmp_path / "lance"), DIMENSIONS).count() == 3  # opened again: nothing moved twice


def test_a_split_cut_short_by_a_killed_process_is_done_whole_by_the_next_open(tmp_path, monkeypatch):
    rows = [row([1, 0, 0, 0, 0, 0, 0, 0], collection="c1", file_id="a", index=i) for i in range(25)]
    db = _single_table_store(tmp_path, rows)
    # what a process killed midway leaves: the collection's table begun, the old one still there
    db.create_table("chunks.c1", data=db.open_table("chunks").to_arrow().slice(0, 1))
    monkeypatch.setattr(LanceStore, "SPLIT_BATCH_ROWS", 10)  # read back in three batches
    store = LanceStore(str(tmp_path / "lance"), DIMENSIONS)
    assert store.count() == 25 and "chunks" not in db.list_tables().tables
    assert sorted(h.chunk_index for h in store.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 30, ["c1"])) == list(range(25))


def test_a_lancedb_query_over_more_collections_than_it_keeps_open_finds_each_ones_chunks(tmp_path):
    store = LanceStore(str(tmp_path / "lance"), DIMENSIONS)
    store.OPEN_TABLES, store.QUERIES_AT_ONCE = 2, 1
    store.add([row([1, 0.1 * i, 0, 0, 0, 0, 0, 0], collection=f"c{i}", file_id=f"f{i}", text=f"word{i} shared")
               for i in range(6)])
    collections = [f"c{i}" for i in range(6)]
    for _ in range(2):  # the second time, every table is opened again
        assert [h.file_id for h in store.search(unit([1, 0, 0, 0, 0, 0, 0, 0]), 6, collections)] == [
            f"f{i}" for i in range(6)]
        assert {h.file_id for h in store.full_text("shared", 6, collections)} == {f"f{i}" for i in range(6)}
    assert store.count() == 6 and len(store._open) <= 2


def test_a_lancedb_query_opens_only_the_tables_of_the_collections_it_names(tmp_path):
    from agent_portal.plugins.documents.lance_store import table_name

    writer = LanceStore(str(tmp_path / "lance"), DIMENSIONS)
    writer.add([row([1, 0, 0, 0, 0, 0, 0, 0], collection=c, file_id=c, text="shared words") for c in ("mine", "a", "b")])
    reader = LanceStore(str(tmp_path / "lance"), DIMENSIONS)  # a serving worker's, nothing open yet
    for mode in ("dense", "full_text", "hybrid"):
        assert [h.file_id for h in reader.query(unit([1, 0, 0, 0, 0, 0, 0, 0]), "shared", 5, ["mine"], mode)] == ["mine"]
    assert list(reader._open) == [table_name("mine")]


def test_a_small_lancedb_collection_has_every_chunk_in_its_full_text_index(tmp_path):
    import lancedb

    store = LanceStore(str(tmp_path / "lance"), DIMENSIONS)
    store.add([row([1, 0, 0, 0, 0, 0, 0, 0], collection="small", index=i, text=f"word{i}") for i in range(5)])
    table = lancedb.connect(str(tmp_path / "lance")).open_table("chunks.small")
    (words,) = [index for index in table.list_indices() if index.index_type == "FTS"]
    assert table.index_stats(words.name).num_unindexed_rows == 0  # none left to a flat scan
