"""Prometheus metrics at ``/metrics``: chat calls, latency, tokens, cost, upstream errors, ledger.

Under several gunicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` (``deploy/gunicorn.conf.py``
does): every worker writes its figures there and ``/metrics`` sums them.
"""
from __future__ import annotations

import hmac
import os

from flask import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST, values
from prometheus_client.multiprocess import MultiProcessCollector

from agent_portal import Actor, Route, hookimpl
from agent_portal.config import strict_object
from agent_portal.schemas import STRING, media
from agent_portal.tokens import bearer_token

NAME = "metrics"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class PortalMetrics:
    """The app's metric families, in a registry of its own."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        # prometheus_client picks file-backed values when it is first imported; only then are
        # the other workers' figures in the directory to be summed.
        file_backed = values.ValueClass is not values.MutexValue
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") if file_backed else None
        kw = {"registry": self.registry}
        self.requests = Counter("portal_chat_requests", "Chat calls by model, backend and outcome.",
                                ["model", "backend", "outcome"], **kw)
        self.duration = Histogram("portal_chat_duration_seconds", "Whole chat call duration.",
                                  ["model"], buckets=LATENCY_BUCKETS, **kw)
        self.ttft = Histogram("portal_chat_ttft_seconds", "Time to the first streamed chunk.",
                              ["model"], buckets=LATENCY_BUCKETS, **kw)
        self.tokens = Counter("portal_chat_tokens", "Tokens by model and kind (prompt, completion).",
                              ["model", "kind"], **kw)
        self.cost = Counter("portal_chat_cost_usd", "Cost of chat calls in USD.", ["model"], **kw)
        self.upstream_errors = Counter("portal_upstream_errors", "Upstream failures by kind.",
                                       ["kind"], **kw)
        self.ledger_queue = Gauge("portal_ledger_queue_depth", "Records waiting for the database.",
                                  multiprocess_mode="livesum", **kw)
        self.ledger_dropped = Gauge("portal_ledger_dropped_records",
                                    "Records lost because neither memory nor the journal could hold them.",
                                    multiprocess_mode="livesum", **kw)
        self.ledger_journal = Gauge("portal_ledger_journal_records",
                                    "Records waiting in the ledger's on-disk journal (every worker's "
                                    "files: each worker reports the whole directory).",
                                    multiprocess_mode="livemax", **kw)
        self.ledger_oldest = Gauge("portal_ledger_oldest_unwritten_seconds",
                                   "Age of the oldest record not yet in the database.",
                                   multiprocess_mode="livemax", **kw)

    def measure(self, name: str, value: float, labels: dict) -> None:
        """Set the gauge or add to the counter ``name`` (see the ``portal_metric`` hook)."""
        family = {"ledger_queue_depth": self.ledger_queue, "ledger_dropped_records": self.ledger_dropped,
                  "ledger_journal_records": self.ledger_journal,
                  "ledger_oldest_unwritten_seconds": self.ledger_oldest,
                  "upstream_errors": self.upstream_errors}.get(name)
        if family is None:
            return
        if labels:
            family = family.labels(**labels)
        if isinstance(family, Gauge):
            family.set(value)
        else:
            family.inc(value)

    def observe(self, record) -> None:
        """Count one chat record."""
        self.requests.labels(record.model, record.backend or "none", record.outcome).inc()
        self.duration.labels(record.model).observe(record.duration)
        if record.ttft is not None and record.stream:
            self.ttft.labels(record.model).observe(record.ttft)
        if record.prompt_tokens:
            self.tokens.labels(record.model, "prompt").inc(record.prompt_tokens)
        if record.completion_tokens:
            self.tokens.labels(record.model, "completion").inc(record.completion_tokens)
        if record.cost:
            self.cost.labels(record.model).inc(record.cost)
        if record.outcome not in ("ok", "client_disconnected", "refused"):
            self.upstream_errors.labels(record.outcome).inc()

    def render(self) -> bytes:
        """Return the exposition text (summed over workers in multiprocess mode)."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({"scrape_token": {"type": ["string", "null"], "minLength": 16}})}


@hookimpl(tryfirst=True)
def portal_startup(portal):
    portal.extensions[NAME] = PortalMetrics()


@hookimpl
def portal_chat_completed(portal, record):
    portal.extensions[NAME].observe(record)


@hookimpl
def portal_metric(portal, name, value, labels):
    metrics = portal.extensions.get(NAME)  # asked before this plugin started: nothing to count yet
    if metrics is not None:
        metrics.measure(name, value, labels)


@hookimpl(trylast=True)
def portal_actor_from_request(portal, request):
    """A scraper's token is an identity only on ``/metrics``."""
    scrape_token = portal.plugin_config(NAME).get("scrape_token")
    if not scrape_token or request.path != "/metrics":
        return None
    token = bearer_token(request)
    if token and hmac.compare_digest(token.encode(), scrape_token.encode()):
        return Actor(id="metrics-scraper", role="admin", via="scrape-token")
    return None


@hookimpl
def portal_register_routes(portal):
    def metrics():
        return Response(portal.extensions[NAME].render(), mimetype=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, access="admin", responses={"200": media(**{"text/plain": STRING})})]
