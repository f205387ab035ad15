"""Search: Perplexica behind the portal, multi-user, metered and limited, and as models.

``POST /search`` for users (``search``), ``search:<source>`` as a chat model (``as_model``).
Perplexica has no users of its own: the portal decides who may search which sources and
records every search. Modules: ``settings``, ``client`` (Perplexica 1.12.x), ``stream`` (its
NDJSON stream as SSE and as OpenAI chunks), ``search``, ``as_model``.
"""
from __future__ import annotations

import logging

from agent_portal import ChatTarget, HealthCheck, PortalError, Route, StartupError, hookimpl
from agent_portal.adapter import PrefixedModels

from .as_model import PREFIX, SearchBackend
from .client import PerplexicaClient, WrongVersion, missing_models
from .search import SEARCH_ANSWERS, search_body_schema, search_view
from .settings import NAME, SearchSettings, config_schema

log = logging.getLogger("agent_portal.perplexica")


class SearchState:
    def __init__(self, portal, settings: SearchSettings):
        self.settings = settings
        self.client = PerplexicaClient(portal, settings)
        self.backend = SearchBackend(self.client, settings)
        self.models = PrefixedModels(PREFIX, NAME, settings.expose_as_models)


@hookimpl
def portal_config_schema():
    return {NAME: config_schema()}


@hookimpl
def portal_startup(portal):
    """Refuse a server that answers in another version's shape; a server not up yet, or without
    the configured models yet, is only logged (health shows it)."""
    state = SearchState(portal, SearchSettings(portal.plugin_config(NAME)))
    portal.extensions[NAME] = state
    try:
        providers = state.client.providers()
    except WrongVersion as problem:
        raise StartupError(f"plugin perplexica: plugins.perplexica.url: {problem.message}") from None
    except PortalError as problem:
        log.warning("perplexica: not usable at startup: %s", problem.message)
        return
    missing = missing_models(providers, state.settings)
    if missing:  # models are set up in Perplexica's own UI, maybe after the portal starts: health says
        log.warning("perplexica: the server offers no %s yet", ", ".join(missing))


@hookimpl
def portal_backends(portal):
    state = portal.extensions[NAME]
    return state.models.backends(state.backend)


@hookimpl
def portal_chat_backend(portal, model):
    state = portal.extensions[NAME]
    if not state.settings.expose_as_models or model not in state.backend.model_ids():
        return None
    return ChatTarget(model=model, backend=state.backend, upstream_model=model,
                      input_cost_per_token=state.settings.prices[0], output_cost_per_token=state.settings.prices[1],
                      portal_name=True)


@hookimpl
def portal_chat_admission(portal, actor, model, target, estimate):
    """Searches reached as models follow the same sources per role as ``/search``."""
    state = portal.extensions[NAME]
    if target.backend is state.backend:
        sources = (state.models.name_in(target.upstream_model) or "").split("+")
        if not set(sources) <= set(state.settings.allowed_sources(actor)):
            raise PortalError(f"You may not use the model `{model}`.", status=403, code="model_forbidden")


# a server found unusable this recently has its search: models left out of the model list (a
# client would only get errors); they come back once it answers, or after this long
DOWN_HIDES_MODELS_SECONDS = 30.0


@hookimpl
def portal_models(portal, actor):
    state = portal.extensions[NAME]
    if state.client.down_lately(DOWN_HIDES_MODELS_SECONDS):
        return []
    return state.models.listed(state.settings.allowed_sources(actor))


@hookimpl
def portal_health_checks(portal):
    state = portal.extensions[NAME]

    def check(portal):
        try:
            providers = state.client.providers()
        except PortalError as problem:
            return {"status": "down", "detail": problem.message}
        missing = missing_models(providers, state.settings)
        if missing:
            return {"status": "degraded", "detail": "the server offers no " + ", ".join(missing)
                    + " (plugins.perplexica.chat_model / embedding_model)"}
        return {"status": "up", "detail": f"{len(providers['providers'])} providers"}

    return [HealthCheck(NAME, check, timeout=3.0, required=state.settings.required)]


@hookimpl
def portal_register_routes(portal):
    def search():
        return search_view(portal)

    settings = portal.extensions[NAME].settings
    return [Route("/search", search, methods=("POST",), access="user", schema=search_body_schema(settings),
                  responses=SEARCH_ANSWERS)]
