"""The usage ledger on SQLite and on the real PostgreSQL: writes, aggregates, outages, shutdown."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from agent_portal import ChatRecord, portal_of
from agent_portal.database import create_engine_for
from agent_portal.plugins.ledger.schema import to_row
from agent_portal.usage import UsageQuery

from conftest import PG_URL, base_config, need_service
from tcp_proxy import CuttableProxy

T0 = datetime(2026, 11, 2, 10, 30, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return request.getfixturevalue("pg_url")


def record(user="alice", model="echo", at=T0, prompt=10, completion=20, cost=0.5, duration=0.1,
           outcome="ok", **extra) -> ChatRecord:
    return ChatRecord(request_id=uuid.uuid4().hex, actor_id=user, actor_role="user", model=model,
                      backend="fake", prompt_tokens=prompt, completion_tokens=completion, cost=cost,
                      duration=duration, outcome=outcome, started_at=at.timestamp(), **extra)


def ledger_app(make_app, tmp_path, url, **ledger):
    # the journal in the test's folder: by default a PostgreSQL ledger's is under the working directory
    config = base_config(tmp_path, ledger={"flush_seconds": 0.05, "journal_dir": str(tmp_path / "journal"),
                                           **ledger}, observability={})
    config["portal"]["database_url"] = url
    return make_app(config=config)


def stored_count(url) -> int:
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM portal_chat_calls")).scalar()
    except sa.exc.ProgrammingError:  # not created yet
        return 0
    finally:
        engine.dispose()


def wait_until(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


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


# --- the database going away -----------------------------------------------------------------


@pytest.fixture
def pg_proxy(pg_url):
    proxy = CuttableProxy()
    yield proxy, pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    proxy.close()


def test_database_outage_mid_run_loses_no_record(make_app, tmp_path, pg_proxy):
    need_service("PostgreSQL", "127.0.0.1", 5432)
    proxy, url = pg_proxy
    app = ledger_app(make_app, tmp_path, url)
    portal = portal_of(app)
    writer = portal.extensions["ledger"].writer
    for _ in range(5):
        portal.dispatcher.submit(record())
    assert wait_until(lambda: stored_count(PG_URL) == 5)

    proxy.cut()
    for _ in range(20):
        portal.dispatcher.submit(record())
    assert wait_until(lambda: writer.failures > 0 and len(writer.queue) == 20)
    health = app.test_client().get("/observability/health", headers=_admin(app)).json
    ledger = health["components"]["ledger"]
    # records wait, none is lost: degraded with the figures, not down
    assert ledger["status"] == "degraded" and "database unreachable" in ledger["detail"]
    assert ledger["queued"] == 20 and ledger["dropped"] == 0
    assert stored_count(PG_URL) == 5

    proxy.restore()
    assert wait_until(lambda: stored_count(PG_URL) == 25, seconds=15)
    assert len(writer.queue) == 0 and writer.dropped == 0


def test_without_a_journal_a_full_queue_counts_drops_in_metrics_and_health_says_down(
        make_app, tmp_path, pg_proxy):
    proxy, url = pg_proxy
    config = base_config(tmp_path, ledger={"flush_seconds": 0.05, "max_queue": 3, "journal": False},
                         metrics={}, observability={"health_cache_seconds": 0})
    config["portal"]["database_url"] = url
    app = make_app(config=config)
    portal = portal_of(app)
    proxy.cut()
    for _ in range(5):
        portal.dispatcher.submit(record())
    writer = portal.extensions["ledger"].writer
    assert wait_until(lambda: writer.dropped == 2 and writer.failures > 0)
    time.sleep(0.1)
    metrics = app.test_client().get("/metrics", headers=_admin(app)).data.decode()
    assert "portal_ledger_dropped_records 2.0" in metrics
    assert "portal_ledger_queue_depth 3.0" in metrics
    health = app.test_client().get("/observability/health", headers=_admin(app)).json
    assert health["components"]["ledger"]["status"] == "down"
    assert "records are being lost" in health["components"]["ledger"]["detail"]
    proxy.restore()
    assert wait_until(lambda: stored_count(PG_URL) == 3, seconds=15)


def _admin(app):
    from conftest import bearer

    return bearer(app, "root", "admin")


def test_portal_boots_with_its_database_down_and_writes_once_it_is_back(make_app, tmp_path, pg_proxy):
    proxy, url = pg_proxy
    proxy.cut()
    app = ledger_app(make_app, tmp_path, url)
    portal = portal_of(app)
    assert app.test_client().get("/ready").status_code == 200
    for _ in range(4):
        portal.dispatcher.submit(record())
    writer = portal.extensions["ledger"].writer
    assert wait_until(lambda: writer.failures > 0 and len(writer.queue) == 4)
    proxy.restore()
    assert wait_until(lambda: stored_count(PG_URL) == 4, seconds=15)


def test_a_plugin_failing_to_start_is_named(tmp_path):
    from agent_portal import StartupError, create_app

    config = base_config(tmp_path, ledger={})
    config["portal"]["database_url"] = "mysql://nobody@127.0.0.1:1/none"
    with pytest.raises(StartupError, match="plugin 'ledger' failed to start"):
        create_app(config)


def test_concurrent_flushes_neither_lose_nor_double_records(make_app, tmp_path):
    url = f"sqlite:///{tmp_path}/race.db"
    portal = portal_of(ledger_app(make_app, tmp_path, url, flush_seconds=0.001, batch_size=7))
    writer = portal.extensions["ledger"].writer
    for _ in range(300):
        writer.add(to_row(record()))
    errors = []

    def flush():
        try:
            writer.flush_once()
        except Exception as exc:  # noqa: BLE001 - any error here is the failure being tested
            errors.append(exc)

    flushers = [threading.Thread(target=flush) for _ in range(8)]
    for thread in flushers:
        thread.start()
    for thread in flushers:
        thread.join()
    assert errors == []
    assert wait_until(lambda: stored_count(url) == 300)
    assert writer.written == 300 and len(writer.queue) == 0


# --- the journal: past memory, across restarts --------------------------------------------------


def _rows_by_call_id(url) -> dict:
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT call_id, count(*) FROM portal_chat_calls GROUP BY call_id")).all())
    finally:
        engine.dispose()


def test_records_past_the_memory_bound_go_to_the_journal_and_reach_the_database_once(
        make_app, tmp_path, pg_proxy):
    proxy, url = pg_proxy
    app = ledger_app(make_app, tmp_path, url, max_queue=5, journal_dir=str(tmp_path / "journal"))
    writer = portal_of(app).extensions["ledger"].writer
    proxy.cut()
    sent = [record() for _ in range(30)]
    for item in sent:
        writer.add(to_row(item))
    assert writer.dropped == 0 and abs(writer.backlog() - 30) <= 1 and writer.journal.rows >= 24
    proxy.restore()
    assert wait_until(lambda: stored_count(PG_URL) == 30, seconds=20)
    assert _rows_by_call_id(PG_URL) == {item.call_id: 1 for item in sent}
    assert wait_until(lambda: writer.backlog() == 0)


def test_a_journal_left_by_a_stopped_portal_is_replayed_at_the_next_start(make_app, tmp_path, pg_proxy):
    proxy, url = pg_proxy
    journal = str(tmp_path / "journal")
    proxy.cut()
    first = ledger_app(make_app, tmp_path, url, journal_dir=journal, shutdown_seconds=0.5)
    sent = [record() for _ in range(12)]
    for item in sent:
        portal_of(first).dispatcher.submit(item)
    portal_of(first).dispatcher.drain()
    portal_of(first).shutdown()  # the database is away: everything goes to the journal
    assert stored_count(PG_URL) == 0
    proxy.restore()
    ledger_app(make_app, tmp_path, url, journal_dir=journal)  # the next start replays it
    assert wait_until(lambda: stored_count(PG_URL) == 12, seconds=20)
    assert _rows_by_call_id(PG_URL) == {item.call_id: 1 for item in sent}


def test_a_journal_replayed_twice_counts_each_call_once(tmp_path):
    import shutil

    from agent_portal.plugins.ledger.schema import migrate
    from agent_portal.plugins.ledger.journal import Journal
    from agent_portal.plugins.ledger.writer import LedgerWriter

    url = f"sqlite:///{tmp_path}/twice.db"
    engine = create_engine_for(url)
    migrate(engine)
    journal = Journal(str(tmp_path / "journal"))
    journal.append([to_row(record()) for _ in range(7)])
    journal.seal()
    original = next((tmp_path / "journal").iterdir())
    shutil.copy(original, tmp_path / "journal" / "crash-copy.jsonl")  # a crash before the delete
    writer = LedgerWriter(engine, 100, 3, 60, journal=Journal(str(tmp_path / "journal")))
    assert writer.flush_once()
    assert stored_count(url) == 7 and list((tmp_path / "journal").iterdir()) == []


def test_back_off_grows_while_the_database_is_down(make_app, tmp_path, pg_proxy):
    proxy, url = pg_proxy
    proxy.cut()
    app = ledger_app(make_app, tmp_path, url)
    writer = portal_of(app).extensions["ledger"].writer
    for _ in range(3):
        writer.add(to_row(record()))
    time.sleep(4.0)
    # tries at about 0, 0.5, 1.5, 3.5 s (with jitter: fewer), never one per record or per tick
    assert 1 <= writer.failures <= 5
    proxy.restore()


def test_a_journal_that_cannot_be_written_loses_records_and_health_says_down(make_app, tmp_path, pg_proxy):
    proxy, url = pg_proxy
    config = base_config(tmp_path, ledger={"flush_seconds": 0.05, "max_queue": 2,
                                           "journal_dir": str(tmp_path / "journal")},
                         observability={"health_cache_seconds": 0})
    config["portal"]["database_url"] = url
    app = make_app(config=config)
    writer = portal_of(app).extensions["ledger"].writer

    def disk_full(rows):
        writer.journal.last_error = "OSError: [Errno 28] No space left on device"
        return False

    writer.journal.append = disk_full
    proxy.cut()
    for _ in range(5):
        writer.add(to_row(record()))
    assert writer.dropped == 3
    health = app.test_client().get("/observability/health", headers=_admin(app)).json["components"]["ledger"]
    assert health["status"] == "down" and "No space left" in health["detail"]
    proxy.restore()


def test_a_long_journal_is_replayed_a_share_at_a_time_and_its_count_falls_as_it_goes(tmp_path):
    from agent_portal.plugins.ledger.journal import Journal

    journal = Journal(str(tmp_path / "journal"))
    journal.append([to_row(record()) for _ in range(50)])
    assert journal.on_disk()["files"] == 1 and journal.on_disk()["bytes"] > 0
    written = []
    assert journal.replay(written.extend, batch_size=7, max_rows=20) is False
    assert len(written) == 20 and abs(journal.rows - 30) <= 1  # estimated from the bytes left
    assert journal.replay(written.extend, batch_size=7, max_rows=20) is False
    assert journal.replay(written.extend, batch_size=7, max_rows=20) is True
    assert len(written) == 50 and len({r["call_id"] for r in written}) == 50
    assert journal.rows == 0 and journal.on_disk()["files"] == 0
