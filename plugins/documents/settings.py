"""The documents plugin's config section: its schema and the settings read from it at startup."""
from __future__ import annotations

from agent_portal.config import strict_object

NAME = "documents"


def state_of(portal):
    """Return this plugin's state in ``portal`` (its ``DocumentState``, made at startup)."""
    return portal.extensions[NAME]


DEFAULT_SERVICE_URL = "http://127.0.0.1:8796"


def config_schema() -> dict:
    """Return the JSON schema of ``plugins.documents``."""
    store = strict_object({
        "kind": {"enum": ["lancedb", "qdrant", "pgvector"], "default": "lancedb"},
        "path": {"type": "string", "default": "data/documents"},   # lancedb, or qdrant's local mode
        "url": {"type": "string", "pattern": "^(https?|postgresql)://"},  # a qdrant server, or pgvector's database
        "api_key": {"type": ["string", "null"]},
    })
    embedder = strict_object({
        # onnx: int8 all-MiniLM-L6-v2 on onnxruntime (no torch); local: sentence-transformers on
        # torch (extra documents-torch); openai: a model a chat backend serves
        "kind": {"enum": ["onnx", "local", "openai"], "default": "onnx"},
        "model": {"type": "string", "default": "all-MiniLM-L6-v2"},  # openai: a model a chat backend serves
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 1024, "default": 16},
        "input_cost_per_token": {"type": "number", "minimum": 0},
        # local: the model lives in `agent-portal worker`, which answers serving workers' query
        # embeddings here (one per host); serving workers never load it
        "service_url": {"type": "string", "pattern": "^http://[^/]+:[0-9]+/?$", "default": DEFAULT_SERVICE_URL},
        # where the worker listens for them, when not the service_url's own host (a container's 0.0.0.0)
        "service_bind": {"type": "string", "pattern": "^[^/:]+:[0-9]+$"},
    })
    queue = strict_object({
        "kind": {"enum": ["sqlite", "postgresql", "redis"], "default": "sqlite"},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$", "default": "agent-portal-documents"},
        "path": {"type": "string", "default": "data/documents-queue.db"},  # sqlite
        "url": {"type": "string", "pattern": "^(postgres(ql)?|rediss?)://"},  # postgresql, redis
    })
    worker = strict_object({
        "threads": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
        # the job worker's CPU priority below the serving workers' (os.nice): ingestion takes what they leave
        "nice": {"type": "integer", "minimum": 0, "maximum": 19, "default": 10},
        "lease_seconds": {"type": "number", "minimum": 1, "default": 60},  # a silent job is taken up again
        "attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 3},
        "retry_delay_seconds": {"type": "number", "minimum": 0, "default": 10},
        "graceful_seconds": {"type": "number", "minimum": 0, "default": 10},
        "parse_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 120},
        "parse_memory_mb": {"type": "integer", "minimum": 256, "default": 2048},
    })
    return strict_object({
        "store": {**store, "default": {}},
        "embedder": {**embedder, "default": {}},
        "queue": {**queue, "default": {}},
        "worker": {**worker, "default": {}},
        "chunk_chars": {"type": "integer", "minimum": 200, "maximum": 20000, "default": 1200},
        "overlap_chars": {"type": "integer", "minimum": 0, "maximum": 5000, "default": 200},
        # cut a chunk shorter until the embedder reads it whole (its tokens, with the title and
        # heading it is embedded with); off: chunk_chars alone, a long chunk's tail not embedded
        "fit_chunks_to_embedder": {"type": "boolean", "default": True},
        "max_file_bytes": {"type": "integer", "minimum": 1, "default": 20 * 1024 * 1024},
        "max_files_per_upload": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        "max_pages": {"type": "integer", "minimum": 1, "default": 2000},
        "max_text_chars": {"type": "integer", "minimum": 1000, "default": 5_000_000},
        "max_inflated_bytes": {"type": "integer", "minimum": 1024, "default": 100 * 1024 * 1024},
        "answer_model": {"type": "string"},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
        # hybrid: the embedding's nearest chunks and BM25's best, fused (reciprocal rank fusion);
        # a store without a full-text index (Qdrant) answers densely whatever this says
        "search_mode": {"enum": ["hybrid", "dense", "full_text"], "default": "hybrid"},
        "max_query_chars": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 2000},
        "answer_timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 120},
        "heartbeat_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 15},
        "expose_as_models": {"type": "boolean", "default": True},
    })


def _defaults(schema: dict) -> dict:
    """Return the default of each property of the object ``schema`` that has one."""
    return {key: spec["default"] for key, spec in schema["properties"].items() if "default" in spec}


class DocumentSettings:
    """This plugin's section, read once at startup."""

    def __init__(self, section: dict):
        nested = config_schema()["properties"]  # the core fills a section's own defaults, not theirs
        self.store, self.embedder, self.queue, self.worker = (
            {**_defaults(nested[key]), **section[key]} for key in ("store", "embedder", "queue", "worker"))
        self.embedder["service_url"] = self.embedder["service_url"].rstrip("/")
        if self.queue["kind"] != "sqlite" and not self.queue.get("url"):
            raise ValueError(f"plugins.documents.queue: kind {self.queue['kind']} needs a url")
        store_url = self.store.get("url") or ""
        if self.store["kind"] == "pgvector" and not store_url.startswith("postgresql://"):
            raise ValueError("plugins.documents.store: kind pgvector needs a url postgresql://... (the portal's "
                             "database will do, with the vector extension)")
        if self.store["kind"] == "qdrant" and store_url.startswith("postgresql://"):
            raise ValueError("plugins.documents.store: a qdrant url is http(s)://")
        self.chunk_chars = section["chunk_chars"]
        self.search_mode = section["search_mode"]
        self.fit_chunks = section["fit_chunks_to_embedder"]
        self.overlap_chars = min(section["overlap_chars"], self.chunk_chars // 2)
        self.max_file_bytes = section["max_file_bytes"]
        self.max_files = section["max_files_per_upload"]
        self.max_pages = section["max_pages"]
        self.max_text_chars = section["max_text_chars"]
        self.max_inflated_bytes = section["max_inflated_bytes"]
        self.answer_model = section.get("answer_model")
        self.top_k = section["top_k"]
        self.max_query_chars = section["max_query_chars"]
        self.answer_timeout = section["answer_timeout_seconds"]
        self.heartbeat = section["heartbeat_seconds"]
        self.expose_as_models = section["expose_as_models"]
        self.embedding_price = self.embedder.get("input_cost_per_token")
