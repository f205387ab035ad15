"""Open WebUI's own RAG on the corpus and questions of ``bench/docs_eval.py``, for a side-by-side.

Runs inside an Open WebUI install of its own (not the portal's venv; never in CI):

    python3 -m venv .cache/openwebui-venv && .cache/openwebui-venv/bin/pip install open-webui==0.12.4
    .venv/bin/python bench/docs_eval.py --corpus python --openwebui .cache/openwebui-venv

(``docs_eval.py`` starts this script with that venv's Python.) Each page goes through Open WebUI's
own code as an uploaded file does: its HTML loader, ``save_docs_to_vector_db`` with Open WebUI's
retrieval settings at their defaults (chunk size, overlap, the markdown-header split), its default
vector database (Chroma, in a temporary data directory), and the same embedding model the portal
uses (all-MiniLM-L6-v2, from the path given). Questions are asked through ``query_doc`` (dense)
and ``query_doc_with_hybrid_search`` (BM25 with the dense results, no reranker, its default BM25
weight). Prints one JSON object per search mode: hit@1, hit@5, MRR@10, the query's p50, and the
chunks and ingestion time.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace


def prepare_environment() -> Path:
    """Point Open WebUI at a temporary data directory, offline; returns the directory."""
    data = Path(tempfile.mkdtemp(prefix="openwebui-eval-"))
    (data / "frontend" / "static").mkdir(parents=True)  # the pip package's config wants one
    os.environ.update(DATA_DIR=str(data), FRONTEND_BUILD_DIR=str(data / "frontend"), OFFLINE_MODE="true",
                      HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WEBUI_SECRET_KEY=uuid.uuid4().hex,
                      ANONYMIZED_TELEMETRY="false", VECTOR_DB="chroma", GLOBAL_LOG_LEVEL="WARNING")
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="python")
    parser.add_argument("--docs")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", required=True, help="the sentence-transformers folder of all-MiniLM-L6-v2")
    args = parser.parse_args(argv)
    prepare_environment()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from docs_eval import CORPORA

    from open_webui.models.config import Config  # noqa: E402 (after the environment)
    from open_webui.retrieval.loaders.local import HTMLLoader
    from open_webui.retrieval.utils import get_embedding_function, query_doc, query_doc_with_hybrid_search
    from open_webui.routers.retrieval import RETRIEVAL_CONFIG_KEYS, save_docs_to_vector_db
    from sentence_transformers import SentenceTransformer

    corpus = CORPORA[args.corpus]
    docs = Path(args.docs or corpus.docs)
    loop = asyncio.new_event_loop()  # Open WebUI embeds on its main loop from a worker thread
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def run(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    config = dict(run(Config.get_many(*RETRIEVAL_CONFIG_KEYS.values())))
    config["rag.embedding_engine"], config["rag.embedding_model"] = "", "sentence-transformers/all-MiniLM-L6-v2"
    model = SentenceTransformer(args.model, device="cpu")
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(ef=model, main_loop=loop, config=config)))
    collection = f"eval-{args.corpus}"
    started = time.monotonic()
    for page in corpus.pages:
        name = f"{Path(page).name}.html"
        loaded = HTMLLoader(str(corpus.page_path(docs, page)), encoding="utf-8").load()
        pages = [type(d)(page_content=d.page_content.replace("<br/>", "\n"),
                         metadata={**d.metadata, "name": name, "source": name, "file_id": page}) for d in loaded]
        save_docs_to_vector_db(request, pages, collection, config, metadata={"file_id": page, "name": name},
                               add=True)
    ingest_seconds = time.monotonic() - started
    embed = get_embedding_function("", config["rag.embedding_model"], model, None, None,
                                   config["rag.embedding_batch_size"])
    asked = corpus.questions(docs, args.questions, args.seed)
    from open_webui.config import RAG_EMBEDDING_QUERY_PREFIX

    searches = {
        "dense": lambda q: query_doc(collection, run(embed(q, prefix=RAG_EMBEDDING_QUERY_PREFIX)), 10),
        "hybrid": lambda q: run(query_doc_with_hybrid_search(
            collection, None, q, lambda query, prefix=None, user=None: embed(query, prefix=prefix, user=user), 10,
            None, 10, 0.0, config["rag.hybrid_bm25_weight"])),
    }
    chunks = None
    for mode, search in searches.items():
        hit1 = hit5 = reciprocal = 0.0
        took = []
        for question, page in asked:
            begun = time.perf_counter()
            result = search(question)
            took.append(time.perf_counter() - begun)
            metadatas = (result.metadatas if hasattr(result, "metadatas") else result["metadatas"])[0]
            rank = next((i for i, m in enumerate(metadatas, 1) if (m or {}).get("name") == page), None)
            hit1 += rank == 1
            hit5 += rank is not None and rank <= 5
            reciprocal += 1 / rank if rank else 0.0
        if chunks is None:
            from open_webui.retrieval.vector.factory import VECTOR_DB_CLIENT

            chunks = len(VECTOR_DB_CLIENT.get(collection_name=collection).ids[0])
        took.sort()
        n = len(asked)
        print(json.dumps({"system": "open-webui", "mode": mode, "hit1": hit1 / n, "hit5": hit5 / n,
                          "mrr10": reciprocal / n, "p50_ms": took[len(took) // 2] * 1000, "questions": n,
                          "chunks": chunks, "chunk_size": config["rag.chunk_size"],
                          "chunk_overlap": config["rag.chunk_overlap"],
                          "markdown_header_split": config["rag.enable_markdown_header_text_splitter"],
                          "ingest_seconds": round(ingest_seconds, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
