"""The usage ledger on SQLite and on the real PostgreSQL: writes, aggregates, migrations, shutdown
(its database going away and its journal: test_ledger_outages.py)."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from agent_portal import portal_of
from agent_portal.database import create_engine_for
from agent_portal.usage import UsageQuery

from ledger_calls import T0, ledger_app, record, stored_count, wait_until

@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return request.getfixturevalue("pg_url")


def test_every_record_is_stored(make_app, tmp_path, db_url):
    portal = portal_of(ledger_app(make_app, tmp_path, db_url))
    for i in range(25):
        portal.dispatcher.submit(record(user=f"u{i % 3}"))
    assert wait_until(lambda: stored_count(db_url) == 25)


def test_aggregates_match_figures_computed_by_hand(make_app, tmp_path, db_url):
    portal = portal_of(ledger_app(make_app, tmp_path, db_url))
    ledger = portal.extensions["ledger"]
    rows = [
        record("alice", "echo", T0, 10, 20, 0.50, 0.100),
        record("alice", "echo", T0 + timedelta(minutes=5), 30, 40, 0.25, 0.300),
        record("alice", "echo", T0 + timedelta(hours=1), 5, 0, 0.0, 0.200, outcome="upstream_reset"),
        record("bob", "echo", T0 + timedelta(days=1), 1, 2, 0.125, 0.050),
        record("bob", "other", T0 + timedelta(days=1), 100, 200, 1.0, 2.0),
        record("carol", "echo", T0 - timedelta(days=30), 9, 9, 9.0, 9.0),  # outside the range
    ]
    for row in rows:
        portal.dispatcher.submit(row)
    assert wait_until(lambda: stored_count(db_url) == 6)
    query = UsageQuery(T0 - timedelta(days=1), T0 + timedelta(days=2), ("user", "model"))
    by_key = {(r["user"], r["model"]): r for r in ledger.usage(query)}
    assert set(by_key) == {("alice", "echo"), ("bob", "echo"), ("bob", "other")}
    alice = by_key[("alice", "echo")]
    assert (alice["requests"], alice["prompt_tokens"], alice["completion_tokens"], alice["errors"]) == (3, 45, 60, 1)
    assert alice["cost"] == pytest.approx(0.75)
    # nearest rank over 100, 200, 300 ms: p50 is the 2nd, p95 the 3rd
    assert (alice["p50_latency_ms"], alice["p95_latency_ms"]) == (200.0, 300.0)
    days = ledger.usage(UsageQuery(T0 - timedelta(days=1), T0 + timedelta(days=2), ("day",)))
    assert [(d["day"], d["requests"]) for d in days] == [("2026-11-02", 3), ("2026-11-03", 2)]
    hours = ledger.usage(UsageQuery(T0 - timedelta(hours=1), T0 + timedelta(hours=3), ("hour",), user="alice"))
    assert [(h["hour"], h["requests"]) for h in hours] == [("2026-11-02T10:00:00Z", 2), ("2026-11-02T11:00:00Z", 1)]
    assert ledger.spend("bob", T0) == pytest.approx(1.125)


def test_shutdown_flushes_what_is_queued(make_app, tmp_path, db_url):
    portal = portal_of(ledger_app(make_app, tmp_path, db_url, flush_seconds=60, batch_size=1000))
    for _ in range(40):
        portal.dispatcher.submit(record())
    portal.shutdown()
    assert stored_count(db_url) == 40


def test_schema_migration_adds_a_missing_column(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine_for(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE portal_chat_calls (id INTEGER PRIMARY KEY, request_id VARCHAR(128) UNIQUE,"
                             " started_at TIMESTAMP, actor_id VARCHAR(200), actor_role VARCHAR(16),"
                             " model VARCHAR(200), outcome VARCHAR(40))"))
    from agent_portal.plugins.ledger.schema import migrate

    migrate(engine)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("portal_chat_calls")}
    assert {"cost", "ttft", "session_id", "partial"} <= columns


def test_workers_starting_together_create_the_tables_once_without_failing(db_url):
    """gunicorn starts every worker at once, and each creates the tables it needs: on a fresh
    PostgreSQL two CREATE TABLEs raced and one worker failed to boot (the soak test saw it)."""
    from agent_portal.plugins.api_keys.store import KeyStore
    from agent_portal.plugins.ledger.schema import migrate

    for attempt in range(5):
        engines = [create_engine_for(db_url) for _ in range(6)]
        with engines[0].begin() as conn:
            for table in ("portal_chat_calls", "portal_api_keys"):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        start, failures = threading.Barrier(len(engines)), []

        def boot(engine):
            start.wait()
            try:
                migrate(engine)
                KeyStore(engine, 10)
            except Exception as exc:  # noqa: BLE001 - the failure is what this test looks for
                failures.append(exc)

        threads = [threading.Thread(target=boot, args=(engine,)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for engine in engines:
            engine.dispose()
        assert failures == [], f"attempt {attempt}: {failures[0]!r}"
