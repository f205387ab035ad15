"""Shared fixtures: apps built from config dicts, a fake upstream, live servers, real services."""
from __future__ import annotations

import os
import socket
import sys
import threading
import uuid
from pathlib import Path

import pytest
from werkzeug.serving import make_server

sys.path.insert(0, os.path.dirname(__file__))

# LiteLLM, langgraph dev, chromium (started once per run); the documents tests' job worker
pytest_plugins = ["fixtures_services", "documents_worker"]

from fake_upstream import FakeUpstream  # noqa: E402
from fake_webui import FakeOpenWebUI  # noqa: E402

from agent_portal import create_app, portal_of  # noqa: E402
from agent_portal.plugins.portal_tokens import mint_token  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent  # the fakes, fixtures and example projects beside this file
ARTIFACTS = TESTS / "artifacts"  # the browser tests' screenshots
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SECRET = "test-portal-secret-0123456789abcdef"
WEBUI_SECRET = "webui-secret-for-tests-0123456789"  # not 44 characters long (see CONTRACTS.md)
# Each test run has a PostgreSQL database and a Redis database of its own, so two runs on one
# machine (a local one beside CI's) never drop each other's tables or flush each other's keys:
# the database is created from the admin URL's server on first use and dropped when the run ends;
# the Redis database is one of 1-15, claimed in database 0 for as long as the run lasts.
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/agent_portal_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
REDIS_SERVER = os.environ.get("TEST_REDIS_SERVER", "redis://127.0.0.1:6379")
REDIS_CLAIM = f"agent-portal-tests:run:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _claim_redis_database() -> int:
    """Return a Redis database number (1-15) no other test run holds, claimed until the run ends
    (or, if it dies, for three hours); 15 when Redis is not there (the tests needing it fail)."""
    try:
        import redis

        admin = redis.Redis.from_url(REDIS_SERVER + "/0", socket_connect_timeout=1)
        for number in range(1, 16):
            if admin.set(f"agent-portal-tests:claimed-db:{number}", REDIS_CLAIM, nx=True, ex=3 * 3600):
                return number
    except Exception:  # noqa: BLE001 - Redis down: redis_url reports it where it is needed
        return 15
    raise RuntimeError("every Redis database 1-15 is claimed by another test run")


REDIS_DB = _claim_redis_database()
REDIS_URL = os.environ.get("TEST_REDIS_URL", f"{REDIS_SERVER}/{REDIS_DB}")


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip when a service is missing on a laptop; fail in CI, where a skip would hide it."""
    if not service_up(host, port):
        missing_service(f"{name} is not reachable at {host}:{port}")


def missing_service(message: str) -> None:
    """Skip the test for ``message``, or fail it in CI, where a skip would hide the missing service."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: a missing service fails the suite)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def fake_upstream():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def webui():
    fake = FakeOpenWebUI(WEBUI_SECRET)
    fake.add_user("alice", "user")
    fake.add_user("root", "admin")
    fake.add_user("newbie", "pending")
    yield fake
    fake.stop()


def base_config(tmp_path, **plugins) -> dict:
    """Return a config with a fresh SQLite file, portal tokens on and the given plugin sections."""
    sections = {"portal_tokens": {}}
    sections.update(plugins)
    return {"portal": {"secret_key": SECRET, "database_url": f"sqlite:///{tmp_path}/portal-{uuid.uuid4().hex}.db",
                       "log_level": "WARNING"},
            "plugins": sections}


@pytest.fixture
def make_app(tmp_path):
    """Build an app from plugin sections (or a whole config with ``config=``); shut down after."""
    apps = []

    def build(config=None, plugins=None, **sections):
        """``plugins``: plugin objects to register besides the installed ones (see create_app)."""
        app = create_app(config if config is not None else base_config(tmp_path, **sections), plugins=plugins)
        apps.append(app)
        return app

    yield build
    for app in apps:
        portal_of(app).shutdown()


def chat_plugins(fake, **chat) -> dict:
    """Plugin sections for chat through ``fake`` with short timeouts, the ledger and observability."""
    return {"chat": {"between_chunks_timeout_seconds": 1.5, "heartbeat_seconds": 0.3,
                     "first_byte_timeout_seconds": 2, "retries": 1, "retry_max_wait_seconds": 0.2,
                     **chat},
            "openai_compat": {"upstreams": {"fake": {"base_url": fake.base_url}}},
            "ledger": {"flush_seconds": 0.05}, "observability": {"health_cache_seconds": 0},
            "metrics": {}, "api_keys": {}}


def settled_rows(app, count: int = 1, timeout: float = 5.0) -> list[dict]:
    """Wait for ``count`` chat records to reach the ledger, write them, and return its newest rows."""
    import time

    portal = portal_of(app)
    deadline = time.monotonic() + timeout
    while portal.dispatcher.delivered < count and time.monotonic() < deadline:
        time.sleep(0.01)
    portal.extensions["ledger"].writer.flush_once()
    return portal.extensions["ledger"].recent(500)


def bearer(app, user: str = "alice", role: str = "user") -> dict:
    """Return an Authorization header with a fresh portal token."""
    return {"Authorization": f"Bearer {mint_token(portal_of(app), user, role)}"}


class LiveServer:
    """The app on a real socket (threaded werkzeug), for clients that need HTTP and WebSockets."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def live_server():
    servers = []

    def start(app):
        server = LiveServer(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _psycopg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://")


@pytest.fixture(scope="session")
def own_pg_database():
    """This run's PostgreSQL database: created on first use, dropped when the run ends."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy as sa

    name = PG_URL.rsplit("/", 1)[1]
    admin = sa.create_engine(_psycopg(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield PG_URL
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def _release_redis_database():
    yield
    try:
        import redis

        admin = redis.Redis.from_url(REDIS_SERVER + "/0", socket_connect_timeout=1)
        key = f"agent-portal-tests:claimed-db:{REDIS_DB}"
        if admin.get(key) == REDIS_CLAIM.encode():
            redis.Redis.from_url(REDIS_URL).flushdb()  # this run's keys go with it
            admin.delete(key)
    except Exception:  # noqa: BLE001 - Redis gone: the claim expires on its own
        pass


@pytest.fixture
def pg_url(own_pg_database):
    import sqlalchemy as sa

    engine = sa.create_engine(_psycopg(PG_URL))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS portal_chat_calls, portal_api_keys"))
    engine.dispose()
    return PG_URL


@pytest.fixture
def redis_url():
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


def free_port() -> int:
    """Return a loopback port nothing listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
