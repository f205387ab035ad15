"""The ledger writer alone: rows per second into SQLite and PostgreSQL, in one run.

    .venv/bin/python bench/ledger.py [--rows 50000] [--postgres postgresql://postgres@127.0.0.1:5432/test]

Queues ``--rows`` records, then times the writer draining them (batches, one transaction each)
and, separately, replaying the same number from the on-disk journal. Prints one line per
database and writes nothing else.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid

import sqlalchemy as sa

from agent_portal import ChatRecord
from agent_portal.database import create_engine_for
from agent_portal.plugins.ledger.journal import Journal
from agent_portal.plugins.ledger.schema import migrate, to_row
from agent_portal.plugins.ledger.writer import LedgerWriter


def records(count: int) -> list[dict]:
    now = time.time()
    return [to_row(ChatRecord(request_id=uuid.uuid4().hex, actor_id=f"user-{i % 50}", actor_role="user",
                              model="demo-chat", backend="litellm", upstream_model="demo-chat",
                              prompt_tokens=12, completion_tokens=40, cost=0.00009, duration=0.2,
                              started_at=now)) for i in range(count)]


def measure(url: str, count: int, batch_size: int) -> dict:
    schema = None
    if url.startswith("postgres"):  # a schema of its own, dropped afterwards: the database keeps nothing
        schema = f"bench_ledger_{uuid.uuid4().hex[:8]}"
        admin = create_engine_for(url)
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    engine = create_engine_for(url)
    migrate(engine)
    rows = records(count)
    with tempfile.TemporaryDirectory() as journal_dir:
        writer = LedgerWriter(engine, max_queue=count, batch_size=batch_size, flush_seconds=3600,
                              journal=Journal(journal_dir))
        for row in rows:
            writer.queue.append((time.time(), row))
        started = time.perf_counter()
        assert writer.flush_once()
        memory = count / (time.perf_counter() - started)
        writer.journal.append(records(count))
        writer.journal.seal()
        started = time.perf_counter()
        assert writer.flush_once()
        journal = count / (time.perf_counter() - started)
    engine.dispose()
    if schema:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    return {"memory_rows_per_s": memory, "journal_rows_per_s": journal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--postgres", default=os.environ.get("TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", f"sqlite:///{tmp}/bench-ledger.db"), ("postgresql", args.postgres)]
        for name, url in targets:
            try:
                figures = measure(url, args.rows, args.batch_size)
            except Exception as exc:  # a database that is not there is reported, not fatal
                print(f"{name:<11} unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                continue
            print(f"{name:<11} {args.rows} rows, batches of {args.batch_size}: "
                  f"{figures['memory_rows_per_s']:,.0f} rows/s from memory, "
                  f"{figures['journal_rows_per_s']:,.0f} rows/s replayed from the journal")


if __name__ == "__main__":
    main()
