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
from agent_portal.config import strict_object

from .open_calls import OpenCall
from .schema import to_row
from .store import Ledger

log = logging.getLogger("agent_portal.ledger")
NAME = "ledger"


def ledger_of(portal) -> Ledger:
    """Return the app's :class:`Ledger`."""
    return portal.extensions[NAME]


@hookimpl
def portal_config_schema():
    return {NAME: strict_object({
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
    })}


def _publish(portal):
    def on_stats(depth: int, dropped: int, journal: int, oldest_age: float) -> None:
        for name, value in (("ledger_queue_depth", depth), ("ledger_dropped_records", dropped),
                            ("ledger_journal_records", journal), ("ledger_oldest_unwritten_seconds", oldest_age)):
            portal.hook.portal_metric(portal=portal, name=name, value=value, labels={})
    return on_stats


@hookimpl(trylast=True)
def portal_startup(portal):
    portal.extensions[NAME] = Ledger(portal, portal.plugin_config(NAME), on_stats=_publish(portal))


@hookimpl
def portal_spend(portal, user, since):
    return ledger_of(portal).spend(user, since)


@hookimpl
def portal_key_spend(portal, key_id, since):
    return ledger_of(portal).spend(key_id, since, field="key_id")


@hookimpl
def portal_recent_calls(portal, limit):
    return ledger_of(portal).recent(limit)


@hookimpl(trylast=True)
def portal_chat_admission(portal, actor, model, target, estimate):
    """Journal the admitted call (after every other admission hook had its say), so that a
    worker that dies with it open still leaves its row."""
    open_calls = ledger_of(portal).open_calls
    if open_calls is None or estimate.record is None:
        return
    mark = open_calls.opened(estimate.record, target, estimate.prompt_tokens)
    if mark is not None:
        estimate.holds.append(mark)


@hookimpl
def portal_chat_completed(portal, record):
    ledger = ledger_of(portal)
    ledger.writer.add(to_row(record))
    if ledger.open_calls is not None and record.reservation is not None:
        for hold in record.reservation.holds:
            if isinstance(hold, OpenCall):
                ledger.open_calls.closed(hold)


@hookimpl
def portal_shutdown(portal):
    ledger = ledger_of(portal)
    outcome = ledger.writer.close(ledger.settings["shutdown_seconds"])
    if ledger.open_calls is not None:
        ledger.open_calls.close()
    log.info("ledger: shutdown wrote %(written)d records, journaled %(journaled)d, lost %(lost)d", outcome)


@hookimpl
def portal_usage_providers(portal):
    return [UsageProvider("ledger", lambda portal, query: ledger_of(portal).usage(query))]


@hookimpl
def portal_health_checks(portal):
    return [HealthCheck(NAME, lambda portal: ledger_of(portal).health(), timeout=3.0,
                        required=portal.plugin_config(NAME)["required"])]
