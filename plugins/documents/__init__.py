"""Documents: upload, parse, chunk, embed, search and answer with citations, for each user the
collections they may read; and each collection as the chat model ``docs:<name>``.

Install with ``pip install 'agent-portal[documents]'`` (CPU torch first: see README). Modules:
``settings``, ``parsing`` (PDF, DOCX, PPTX, HTML, Markdown, text), ``chunking``, ``embedders``
(local model or a backend's /embeddings), ``stores`` (LanceDB, Qdrant), ``catalog`` (collections
and files in the portal's database), ``collections``, ``ingest``, ``embedding`` (metered
embedding, /v1/embeddings), ``answers`` (search, ask), ``as_model`` (docs: models).
"""
from __future__ import annotations

import threading

import urllib3

from agent_portal import ChatTarget, Command, HealthCheck, ModelInfo, PortalError, Route, hookimpl
from agent_portal.adapter import PrefixedModels
from agent_portal.routing import bound_view
from agent_portal.schemas import array, obj

from . import answers, collections, embedding, ingest, schemas, worker
from .as_model import PREFIX, DocsBackend
from .catalog import Catalog
from .jobs import IngestQueue
from .service import WorkerClient
from .settings import NAME, DocumentSettings, config_schema
from .stores import make_store


class DocumentState:
    """The plugin's parts. Serving workers use the catalog, the queue and ``worker`` (the
    host's job worker, for embeddings and searches); the job worker sets ``embedder`` and opens
    the store (``agent-portal worker``)."""

    def __init__(self, portal, settings: DocumentSettings):
        self.settings = settings
        self.catalog = Catalog(portal.database(), portal.actor_groups)
        self.queue = IngestQueue(settings.queue)
        self.worker = WorkerClient(portal, settings.embedder["service_url"])
        self.backend = DocsBackend(portal)
        self.models = PrefixedModels(PREFIX, NAME, settings.expose_as_models)
        self.embedder = None  # the job worker's
        self._store = None
        self._lock = threading.Lock()

    def store(self):
        """Return the vector store, opened on first use (its vectors' size comes from the
        embedder); the job worker's alone, whose threads may block in its native calls."""
        if self._store is None:
            dimensions = self.embedder.dimensions or len(self.embedder.embed(["dimensions"])[0])
            with self._lock:
                if self._store is None:
                    self._store = make_store(self.settings.store, dimensions)
        return self._store

    def answer_timeout(self, stream: bool):
        return urllib3.Timeout(connect=5.0, read=self.settings.answer_timeout)


@hookimpl
def portal_config_schema():
    return {NAME: config_schema()}


@hookimpl
def portal_startup(portal):
    portal.extensions[NAME] = DocumentState(portal, DocumentSettings(portal.plugin_config(NAME)))


@hookimpl
def portal_commands():
    return [Command("worker", "the documents job worker: ingestion jobs and the host's query embeddings",
                    lambda parser: None, worker.run)]


@hookimpl
def portal_processes(portal):
    """The job worker, beside the serving workers of a one-command run."""
    return [["worker"]]


@hookimpl
def portal_backends(portal):
    state = portal.extensions[NAME]
    return state.models.backends(state.backend)


@hookimpl
def portal_chat_backend(portal, model):
    state = portal.extensions[NAME]
    if state.models.name_in(model) is None:
        return None
    answering = portal.hook.portal_chat_backend(portal=portal, model=state.settings.answer_model) \
        if state.settings.answer_model else None
    return ChatTarget(model=model, backend=state.backend, upstream_model=model, portal_name=True,
                      input_cost_per_token=answering.input_cost_per_token if answering else None,
                      output_cost_per_token=answering.output_cost_per_token if answering else None)


@hookimpl
def portal_chat_admission(portal, actor, model, target, estimate):
    """``docs:<name>`` reaches only a collection the caller may read (404 otherwise)."""
    state = portal.extensions[NAME]
    if target.backend is not state.backend or not target.upstream_model.startswith(PREFIX):
        return  # not a docs: model (this plugin's embeddings and answers are metered with the same backend)
    if state.backend.collection_for(actor, target.upstream_model) is None:
        raise PortalError(f"The model `{model}` does not exist or is not served here.", status=404,
                          code="model_not_found", type="invalid_request_error")


@hookimpl
def portal_models(portal, actor):
    """The embedding model behind ``/v1/embeddings`` (OpenAI lists its embedding models too, and a
    client such as Open WebUI's RAG settings finds its name there), and ``docs:<collection>``."""
    state = portal.extensions[NAME]
    embedder = ModelInfo(id=state.settings.embedder["model"], backend=NAME, owned_by=NAME, portal_name=True)
    if not state.models.exposed:
        return [embedder]
    return [embedder, *state.models.listed(c["name"] for c in state.catalog.readable(actor))]


@hookimpl
def portal_health_checks(portal):
    state = portal.extensions[NAME]

    def check(portal):
        worker = state.worker.health()
        if worker.get("status") != "up":
            return {"status": "down", "detail": worker.get("detail", "the documents worker is down")}
        queued = state.queue.pending()
        return {"status": "up", "chunks": worker["chunks"], "queued": queued,
                "detail": f"{state.settings.store['kind']}: {worker['chunks']} chunks; {queued} job(s) queued; "
                          f"model {'loaded' if worker['loaded'] else 'loading'}"}

    return [HealthCheck(NAME, check, timeout=10.0)]


@hookimpl
def portal_register_routes(portal):
    def view(name, func, **fixed):
        return bound_view(portal, name, func, **fixed)

    D = "/documents"
    settings = portal.extensions[NAME].settings
    max_chars = settings.max_query_chars
    return [
        Route(f"{D}/collections", view("collections", collections.collections_view), ("GET", "POST"), "user",
              schema=schemas.NEW_COLLECTION, responses=schemas.COLLECTIONS_ANSWERS),
        Route(f"{D}/collections/<collection_id>", view("collection", collections.collection_view),
              ("GET", "DELETE"), "user", responses={"200": schemas.COLLECTION, "204": None}),
        Route(f"{D}/collections/<collection_id>/sharing", view("sharing", collections.share_view), ("PUT",), "user",
              schema=schemas.SHARING, responses={"200": schemas.COLLECTION}),
        Route(f"{D}/collections/<collection_id>/files", view("upload", ingest.upload_view), ("POST",), "user",
              responses={"202": obj("files", files=array(schemas.FILE))}, max_body_bytes=ingest.upload_limit(settings),
              summary=f"Upload files as multipart `file` parts: at most {settings.max_files}, each at most "
                      f"{settings.max_file_bytes} bytes and {settings.max_pages} pages; answers 202, each file "
                      "queued"),
        Route(f"{D}/files/<file_id>", view("file", ingest.file_view), ("GET", "DELETE"), "user",
              responses={"200": schemas.FILE, "204": None}),
        Route(f"{D}/files/<file_id>/retry", view("retry", ingest.retry_view), ("POST",), "user",
              responses={"202": schemas.FILE}),
        Route(f"{D}/search", view("search", answers.search_view), ("POST",), "user",
              schema=schemas.search_body(max_chars), responses=schemas.SEARCH_ANSWERS),
        Route(f"{D}/ask", view("ask", answers.ask_view), ("POST",), "user",
              schema=schemas.ask_body(max_chars), responses=schemas.ASK_ANSWERS),
        Route("/v1/embeddings", view("embeddings", embedding.embeddings_view), ("POST",), "user",
              schema=schemas.EMBEDDINGS, responses=schemas.EMBEDDINGS_ANSWERS),
    ]
