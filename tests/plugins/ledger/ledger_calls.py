"""What the ledger tests share: a chat record, an app with a ledger on a database, the rows
stored, a wait."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from agent_portal import ChatRecord
from agent_portal.database import create_engine_for

from conftest import base_config

T0 = datetime(2026, 11, 2, 10, 30, tzinfo=timezone.utc)


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
