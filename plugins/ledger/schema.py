"""The ledger's table, its migrations, and how a chat record becomes a row.

A call's identity is ``call_id``: the portal's own, unique per call (and per WebSocket message).
``request_id`` is the caller's correlation id and may repeat. Inserts ignore a ``call_id`` that
is already stored, so a batch retried after an unknown commit, or a journal replayed twice,
never counts a call twice.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from agent_portal.database import schema_lock

log = logging.getLogger("agent_portal.ledger")

metadata = sa.MetaData()
calls = sa.Table(
    "portal_chat_calls", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), nullable=False, unique=True),
    sa.Column("request_id", sa.String(128), nullable=False, index=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor_id", sa.String(200), nullable=False, index=True),
    sa.Column("actor_role", sa.String(16), nullable=False),
    sa.Column("key_id", sa.String(32)),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("backend", sa.String(200), nullable=False, default=""),
    sa.Column("upstream_model", sa.String(200), nullable=False, default=""),
    sa.Column("stream", sa.Boolean, nullable=False, default=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cost", sa.Float, nullable=False, default=0.0),
    sa.Column("usage_source", sa.String(16), nullable=False, default="upstream"),
    sa.Column("ttft", sa.Float),
    sa.Column("duration", sa.Float, nullable=False, default=0.0),
    sa.Column("outcome", sa.String(40), nullable=False),
    sa.Column("status", sa.Integer, nullable=False, default=200),
    sa.Column("partial", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.Text),
    sa.Column("upstream_call_id", sa.String(200)),
    sa.Column("session_id", sa.String(200)),
    sa.Column("served_by", sa.Text),  # JSON: the targets that served a recovered answer, each's tokens and cost
    sa.Column("skipped_chunks", sa.Integer, nullable=False, default=0),
)
COLUMNS = [c.name for c in calls.columns if c.name != "id"]
_CLIPPED = ("actor_id", "model", "backend", "upstream_model", "upstream_call_id", "session_id")


def migrate(engine: sa.Engine) -> None:
    """Create the ledger's table, add any column a newer portal defines, and move an older
    table whose unique key was the caller's ``request_id`` onto ``call_id``; one worker at a
    time (every worker runs it as it starts)."""
    with schema_lock(engine):
        _migrate(engine)


def _migrate(engine: sa.Engine) -> None:
    metadata.create_all(engine)
    inspector = sa.inspect(engine)
    present = {c["name"] for c in inspector.get_columns(calls.name)}
    with engine.begin() as conn:
        for column in calls.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE {calls.name} ADD COLUMN "{column.name}" {kind}'))
                log.info("ledger: added column %s", column.name)
        added = [c for c in calls.columns if c.name not in present]
        for column in added:
            if column.default is not None and column.default.is_scalar:
                conn.execute(calls.update().where(column.is_(None)).values({column.name: column.default.arg}))
        if "call_id" not in present:
            # rows written before call ids existed were unique by request id
            conn.execute(calls.update().where(calls.c.call_id.is_(None)).values(call_id=calls.c.request_id))
    if _request_id_is_unique(engine):
        _drop_request_id_uniqueness(engine)
    _ensure_unique_call_id(engine)


def _unique_column_sets(engine: sa.Engine) -> list[list[str]]:
    """Return the column lists of every unique constraint and unique index of the ledger table."""
    if engine.dialect.name == "sqlite":  # the inspector does not report a column-level UNIQUE
        with engine.connect() as conn:
            indexes = conn.execute(sa.text(f"PRAGMA index_list('{calls.name}')")).all()
            return [[info[2] for info in conn.execute(sa.text(f"PRAGMA index_info('{index[1]}')"))]
                    for index in indexes if index[2]]
    inspector = sa.inspect(engine)
    uniques = [u["column_names"] for u in inspector.get_unique_constraints(calls.name)]
    return uniques + [i["column_names"] for i in inspector.get_indexes(calls.name) if i.get("unique")]


def _request_id_is_unique(engine: sa.Engine) -> bool:
    return ["request_id"] in _unique_column_sets(engine)


def _drop_request_id_uniqueness(engine: sa.Engine) -> None:
    inspector = sa.inspect(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for unique in inspector.get_unique_constraints(calls.name):
                if unique["column_names"] == ["request_id"]:
                    conn.execute(sa.text(f'ALTER TABLE {calls.name} DROP CONSTRAINT "{unique["name"]}"'))
            for index in inspector.get_indexes(calls.name):
                if index.get("unique") and index["column_names"] == ["request_id"]:
                    conn.execute(sa.text(f'DROP INDEX IF EXISTS "{index["name"]}"'))
            conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS ix_{calls.name}_request_id "
                                 f"ON {calls.name} (request_id)"))
        log.info("ledger: request_id is no longer unique; call_id is")
        return
    # SQLite cannot drop a column's UNIQUE: rebuild the table, the documented way
    names = ", ".join(f'"{c["name"]}"' for c in inspector.get_columns(calls.name))
    index_names = [index["name"] for index in inspector.get_indexes(calls.name)]
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {calls.name} RENAME TO {calls.name}_old"))
        for index in index_names:  # they moved with the table; their names are wanted again
            conn.execute(sa.text(f'DROP INDEX IF EXISTS "{index}"'))
        calls.create(conn)
        conn.execute(sa.text(f"INSERT INTO {calls.name} ({names}) SELECT {names} FROM {calls.name}_old"))
        conn.execute(sa.text(f"DROP TABLE {calls.name}_old"))
    log.info("ledger: rebuilt %s with call_id as its unique key", calls.name)


def _ensure_unique_call_id(engine: sa.Engine) -> None:
    if ["call_id"] not in _unique_column_sets(engine):
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE UNIQUE INDEX ux_{calls.name}_call_id ON {calls.name} (call_id)"))


def insert_statement(engine: sa.Engine):
    """Return the batch insert for ``engine`` that skips rows whose ``call_id`` is stored."""
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(calls).on_conflict_do_nothing(index_elements=["call_id"])
    if name == "sqlite":
        return sqlite.insert(calls).on_conflict_do_nothing(index_elements=["call_id"])
    return calls.insert()


STAGING = f"{calls.name}_incoming"


def copy_insert(conn, rows: list[dict]) -> None:
    """Insert ``rows`` on PostgreSQL with ``COPY`` into a session's staging table, then one
    ``INSERT ... SELECT ... ON CONFLICT (call_id) DO NOTHING``.

    A handful of round trips per batch instead of one message per row: under gevent every
    round trip waits a turn of the event loop, and a writer that needs hundreds of them per
    batch falls behind a busy worker.
    """
    columns = ", ".join(COLUMNS)
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} ON COMMIT DELETE ROWS AS "
                       f"SELECT {columns} FROM {calls.name} WITH NO DATA")
        with cursor.copy(f"COPY {STAGING} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[name] for name in COLUMNS])
        cursor.execute(f"INSERT INTO {calls.name} ({columns}) SELECT {columns} FROM {STAGING} "
                       "ON CONFLICT (call_id) DO NOTHING")


def to_row(record) -> dict:
    """Return the ledger row of a :class:`agent_portal.ChatRecord` (JSON-able: time as a float)."""
    row = {name: getattr(record, name) for name in COLUMNS}
    if row.get("served_by") is not None:
        row["served_by"] = json.dumps(row["served_by"])
    for name in _CLIPPED:
        if isinstance(row.get(name), str):
            row[name] = row[name][:200]
    if row.get("error"):
        row["error"] = str(row["error"])[:2000]
    return row


def for_database(row: dict) -> dict:
    """Return ``row`` as the database takes it: ``started_at`` as an aware datetime."""
    out = dict(row)
    out["started_at"] = datetime.fromtimestamp(row["started_at"], timezone.utc)
    return out
