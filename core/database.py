"""One SQLAlchemy engine per app, for SQLite and PostgreSQL alike."""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager

import sqlalchemy as sa

SCHEMA_LOCK = "agent-portal schema"


def create_engine_for(url: str) -> sa.Engine:
    """Return an engine for ``url``; ``postgresql://`` URLs use the psycopg 3 driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:" and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)  # SQLite makes the file, not its folder
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


@contextmanager
def schema_lock(engine: sa.Engine, name: str = SCHEMA_LOCK):
    """Let one worker at a time, across processes and instances, create or change tables.

    gunicorn starts every worker at once and each creates the tables it needs; unguarded, two
    ``CREATE TABLE`` race and one worker fails to boot. On PostgreSQL this is an advisory lock
    held on a connection of its own; on SQLite (one machine) a lock on a file beside the
    database. Yields nothing.
    """
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        return
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        yield
        return
    import fcntl

    with open(f"{path}.schema-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def create_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Create ``metadata``'s missing tables and add the columns a newer portal defines to the
    tables an older one made (nullable, filled with their default), one worker at a time
    (:func:`schema_lock`)."""
    with schema_lock(engine):
        metadata.create_all(engine)
        inspector = sa.inspect(engine)
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c for c in table.columns if c.name not in present]
            with engine.begin() as conn:
                for column in missing:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
                    if column.default is not None and column.default.is_scalar:
                        conn.execute(table.update().values({column.name: column.default.arg}))


def set_row(conn, table: sa.Table, key: dict, values: dict) -> None:
    """Set the row of ``table`` whose columns hold ``key`` to ``values``: update it, or insert
    it when there is none (portable across SQLite and PostgreSQL; run it in a transaction)."""
    match = [table.c[name] == value for name, value in key.items()]
    if not conn.execute(table.update().where(*match).values(**values)).rowcount:
        conn.execute(table.insert().values(**key, **values))
