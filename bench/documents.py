"""The documents plugin's speed: ingestion (pages and chunks per second, by stage), search
latency p50/p99 at 10k and 100k chunks, and memory. Prints figures; bounded in time.

Ingestion runs the real pipeline (pypdf, chunking, the local MiniLM embedder on the CPU,
LanceDB) on a PDF made from the Python documentation's text (Debian's python3.11-doc when
installed, else generated sentences). Search latency is the store's own (the query vector
given), with the collection filter in the query, over random unit vectors; the query's
embedding time is printed beside it.

Run: .venv/bin/python bench/documents.py [--pages 30] [--sizes 10000 100000] [--queries 200]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = Path("/usr/share/doc/python3.11/html/library")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def source_text(pages: int) -> str:
    if (DOCS / "os.html").exists():
        from agent_portal.plugins.documents.parsing import parse

        text = "\n\n".join(s.text for name in ("os.html", "json.html", "csv.html")
                           for s in parse(name, (DOCS / name).read_bytes()))
    else:
        rng = random.Random(3)
        words = "portal ledger budget stream token model agent search notebook collection".split()
        text = "\n\n".join(" ".join(rng.choice(words) for _ in range(60)) + "." for _ in range(pages * 8))
    return text.encode("latin-1", "replace").decode("latin-1")


def make_pdf(text: str, pages: int) -> bytes:
    from fpdf import FPDF

    document = FPDF()
    document.set_font("helvetica", size=10)
    per_page = max(1, len(text) // pages)
    for number in range(pages):
        document.add_page()
        document.multi_cell(0, 5, text[number * per_page:(number + 1) * per_page][:3500])
    return bytes(document.output())


def ingestion(pages: int) -> None:
    from agent_portal.plugins.documents.chunking import chunk_sections
    from agent_portal.plugins.documents.embedders import LocalEmbedder
    from agent_portal.plugins.documents.parsing import parse
    from agent_portal.plugins.documents.stores import LanceStore

    data = make_pdf(source_text(pages), pages)
    embedder = LocalEmbedder("all-MiniLM-L6-v2", 64)
    embedder.embed(["warm up"])
    store = LanceStore(tempfile.mkdtemp(prefix="docs-bench-"), embedder.dimensions)
    marks = [time.monotonic()]
    sections = parse("bench.pdf", data)
    marks.append(time.monotonic())
    chunks = chunk_sections(sections, 1200, 200)
    marks.append(time.monotonic())
    vectors = embedder.embed([c.text for c in chunks])
    marks.append(time.monotonic())
    store.add([{"vector": v, "collection_id": "c", "file_id": "f", "file_name": "bench.pdf", "chunk_index": c.index,
                "page": c.page, "heading": c.heading, "text": c.text} for c, v in zip(chunks, vectors)])
    marks.append(time.monotonic())
    total = marks[-1] - marks[0]
    stages = ", ".join(f"{name} {later - earlier:.2f} s" for name, earlier, later in
                       zip(("parse", "chunk", "embed", "store"), marks, marks[1:]))
    print(f"ingestion: {pages} PDF pages, {len(chunks)} chunks in {total:.1f} s = "
          f"{pages / total:.1f} pages/s, {len(chunks) / total:.1f} chunks/s ({stages})")
    started = time.monotonic()
    for _ in range(20):
        embedder.embed(["how do I read a csv file with a header row?"])
    print(f"query embedding: {(time.monotonic() - started) / 20 * 1000:.1f} ms each (MiniLM, CPU)")


def search_latency(kind: str, size: int, queries: int, dimensions: int = 384) -> None:
    from agent_portal.plugins.documents.stores import LanceStore, QdrantStore

    rng = random.Random(size)

    def unit():
        vector = [rng.gauss(0, 1) for _ in range(dimensions)]
        norm = sum(x * x for x in vector) ** 0.5
        return [x / norm for x in vector]

    store = LanceStore(tempfile.mkdtemp(prefix="docs-bench-"), dimensions) if kind == "lancedb" \
        else QdrantStore(dimensions, path=":memory:")
    started = time.monotonic()
    for start in range(0, size, 5000):
        store.add([{"vector": unit(), "collection_id": f"c{i % 20}", "file_id": f"f{i // 50}", "file_name": "x",
                    "chunk_index": i, "page": None, "heading": None, "text": "chunk text"}
                   for i in range(start, min(size, start + 5000))])
    loaded = time.monotonic() - started
    times = []
    for _ in range(queries):
        query = unit()
        begin = time.perf_counter()
        store.search(query, 5, ["c1", "c7", "c13"])
        times.append((time.perf_counter() - begin) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"search {kind:8} {size:>7,} chunks (filter: 3 of 20 collections, k 5): p50 {statistics.median(times):6.1f} ms"
          f"  p99 {p99:6.1f} ms   (loaded in {loaded:.1f} s; process RSS {rss_mb():.0f} MB)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--qdrant-max", type=int, default=10_000, help="largest size tried on Qdrant's local mode")
    args = parser.parse_args(argv)
    print(f"process RSS at start: {rss_mb():.0f} MB")
    ingestion(args.pages)
    print(f"process RSS with the embedder loaded: {rss_mb():.0f} MB")
    for size in args.sizes:
        search_latency("lancedb", size, args.queries)
        if size <= args.qdrant_max:
            search_latency("qdrant", size, args.queries)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
