"""Helpers the tests share: the portal and its job worker started as processes, the workers a
gunicorn master runs, a config section for every built-in plugin, and an upstream body that
hands out given pieces (for the stream relay)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from conftest import WEBUI_SECRET, chat_plugins, free_port

# the secret of Open WebUI's forwarded-user header, as the tests sign it
HEADER_SECRET = "forward-user-info-secret-0123456789abcdef"


def start_portal(path, env_extra: dict, workers: int, cwd=None):
    """Start ``agent-portal serve`` on a free port; returns the process and its base URL once /ready."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "agent_portal.cli", "serve", "--config", str(path),
                                "--port", str(port), "--workers", str(workers)], env={**os.environ, **env_extra},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/ready", timeout=0.5).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.05)
    return process, base


def start_job_worker(path, log_path, env: dict | None = None) -> subprocess.Popen:
    """Start `agent-portal worker` as its own process (its log in ``log_path``)."""
    return subprocess.Popen([sys.executable, "-m", "agent_portal.cli", "worker", "--config", str(path)],
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def gunicorn_workers(master: int) -> set[int]:
    children = set()
    for task in os.listdir(f"/proc/{master}/task"):
        with open(f"/proc/{master}/task/{task}/children") as handle:
            children |= {int(pid) for pid in handle.read().split()}
    return children


def every_builtin_plugin(fake_upstream, webui) -> dict:
    sections = {
        **chat_plugins(fake_upstream),
        "litellm": {"url": "http://127.0.0.1:9", "models": ["audit-model"], "required": False},
        "openwebui_session": {"url": webui.url, "secret": WEBUI_SECRET},
        "openwebui_header": {"secret": HEADER_SECRET},
        "portal_tokens": {},
        "rate_limits": {"roles": {"user": {"requests_per_minute": 1000}}},
        "kong": {"admin_url": "http://127.0.0.1:9"},
        "embeds": {"uis": {"ui": {"url": "http://127.0.0.1:9"}}},
        "langfuse": {"public_key": "pk-lf-audit-3f8a1c6e9b", "secret_key": "sk-lf-audit-2b7d4e9a1f", "base_url": "http://127.0.0.1:9"},
        "helicone": {"api_key": "helicone-audit-8c2e5a1f7d", "api_url": "http://127.0.0.1:9"},
        "dashboard": {},
        "langgraph": {"url": "http://127.0.0.1:9"},
        "open_notebook": {"url": "http://127.0.0.1:9"},
        "documents": {},
        "perplexica": {"url": "http://127.0.0.1:9", "chat_model": {"provider_id": "p", "key": "m"},
                       "embedding_model": {"provider_id": "p", "key": "e"}},
        "mcp": {"servers": {"tools": {"url": "http://127.0.0.1:9/mcp", "timeout_seconds": 1}}},
        "audit": {},
        "openwebui_groups": {"url": "http://127.0.0.1:9", "api_key": "sk-audit-groups-7e3c9a1b5f"},
    }
    return sections


class PiecesBody:
    """An upstream response body that hands out the given pieces, one a read, then ends; says
    whether the relay gave its connection back (``released``) or closed it."""

    def __init__(self, *pieces: bytes):
        self.pieces = list(pieces)
        self.released = self.closed = False
        self.connection = None

    def read1(self, _size=65536):
        return self.pieces.pop(0) if self.pieces else b""

    def release_conn(self):
        self.released = True

    def close(self):
        self.closed = True
