"""The usage ledger while its database goes away, and its journal: past memory, across restarts."""
from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from agent_portal import portal_of
from agent_portal.database import create_engine_for
from agent_portal.plugins.ledger.schema import to_row

from conftest import PG_URL, base_config, need_service
from ledger_calls import ledger_app, record, stored_count, wait_until
from tcp_proxy import CuttableProxy

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
