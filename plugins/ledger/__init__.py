"""The usage ledger: every chat record in SQLite or PostgreSQL, one row per call, written in
batches off the request path.

Records wait in memory (up to ``max_queue``) and past that in a local journal, so a database
that is down or slow for longer than memory allows loses nothing; the journal is replayed,
each call once, when the database returns, also after a restart. Shutdown writes what it can
and journals the rest.
"""
from __future__ import annotations

import logging

from agent_portal import HealthCheck, UsageProvider, hookimpl

from .schema import calls, migrate, to_row  # noqa: F401 - the ledger's public pieces
from .store import Ledger

log = logging.getLogger("agent_portal.ledger")
NAME = "ledger"


def ledger_of(portal) -> Ledger:
    """Return the app's :class:`Ledger`."""
    return portal.extensions[NAME]


@hookimpl
def portal_config_schema():
    return {NAME: {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "database_url": {"type": ["string", "null"]},
            "max_queue": {"type": "integer", "minimum": 1, "default": 20_000},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1000},
            "flush_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 0.5},
            "journal": {"type": "boolean", "default": True},
            "journal_dir": {"type": ["string", "null"]},
            "backlog_warning": {"type": "integer", "minimum": 0, "default": 10_000},
            "age_warning_seconds": {"type": "number", "minimum": 0, "default": 60},
            "shutdown_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 5},
            "required": {"type": "boolean", "default": True},
        },
    }}


@hookimpl(trylast=True)
def portal_startup(portal):
    metrics = portal.extensions.get("metrics")
    portal.extensions[NAME] = Ledger(portal, portal.plugin_config(NAME),
                                     on_stats=metrics.ledger_stats if metrics else None)


@hookimpl
def portal_chat_completed(portal, record):
    ledger_of(portal).writer.add(to_row(record))


@hookimpl
def portal_shutdown(portal):
    ledger = ledger_of(portal)
    outcome = ledger.writer.close(ledger.settings["shutdown_seconds"])
    log.info("ledger: shutdown wrote %(written)d records, journaled %(journaled)d, lost %(lost)d", outcome)


@hookimpl
def portal_usage_providers(portal):
    return [UsageProvider("ledger", lambda portal, query: ledger_of(portal).usage(query))]


@hookimpl
def portal_health_checks(portal):
    return [HealthCheck(NAME, lambda portal: ledger_of(portal).health(), timeout=3.0,
                        required=portal.plugin_config(NAME)["required"])]
