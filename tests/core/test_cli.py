"""The agent-portal command: check-config, plugins, routes, token, keys, serve."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from agent_portal.cli import main

from conftest import ROOT, free_port


@pytest.fixture
def config_file(tmp_path):
    config = {"portal": {"secret_key": "${TEST_PORTAL_SECRET}", "database_url": f"sqlite:///{tmp_path}/cli.db",
                         "log_level": "WARNING"},
              "plugins": {"portal_tokens": {}, "api_keys": {}, "ledger": {}, "observability": {},
                          "metrics": {}, "chat": {},
                          "litellm": {"url": "http://127.0.0.1:9", "api_key": "sk-very-secret-litellm-key",
                                      "models": ["demo"]}}}
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    os.environ["TEST_PORTAL_SECRET"] = "cli-secret-7d1e9b40c5a3f8e2a6b1c9d4"
    yield str(path)
    os.environ.pop("TEST_PORTAL_SECRET", None)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_config_prints_effective_config_with_secrets_masked(capsys, config_file):
    code, out, _ = run(capsys, "check-config", "--config", config_file)
    assert code == 0
    shown = json.loads(out)
    assert shown["portal"]["secret_key"] == "********"
    assert shown["plugins"]["litellm"]["api_key"] == "********"
    assert "sk-very-secret" not in out and "cli-secret" not in out
    assert shown["plugins"]["chat"]["retries"] == 2  # defaults filled in


def test_check_config_reads_and_checks_but_writes_nothing(capsys, config_file, tmp_path, pg_url):
    import sqlalchemy as sa

    assert run(capsys, "check-config", "--config", config_file)[0] == 0
    assert not (tmp_path / "cli.db").exists() and not list(tmp_path.glob("*journal*"))
    config = yaml.safe_load(Path(config_file).read_text())
    config["portal"]["database_url"] = pg_url
    Path(config_file).write_text(yaml.safe_dump(config))
    assert run(capsys, "check-config", "--config", config_file)[0] == 0
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        assert "portal_chat_calls" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_check_config_names_a_trusted_proxy_that_is_not_a_network(capsys, config_file):
    config = yaml.safe_load(Path(config_file).read_text())
    config["portal"]["trusted_proxies"] = ["10.0.0.0/8", "kong.internal"]
    Path(config_file).write_text(yaml.safe_dump(config))
    code, _, err = run(capsys, "check-config", "--config", config_file)
    assert code == 1 and "portal.trusted_proxies: 'kong.internal'" in err


def test_check_config_reports_errors_and_exits_1(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("portal:\n  secret_key: short\nplugins:\n  nonsense: {}\n")
    code, _, err = run(capsys, "check-config", "--config", str(path))
    assert code == 1 and "nonsense" in err


def test_check_config_refuses_invalid_yaml(capsys, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("portal: [unclosed\n")
    code, _, err = run(capsys, "check-config", "--config", str(path))
    assert code == 1 and "not valid YAML" in err


def test_plugins_lists_enabled_plugins_and_their_hooks(capsys, config_file):
    code, out, _ = run(capsys, "plugins", "--config", config_file, "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["ledger"]["enabled"] and "portal_chat_completed" in rows["ledger"]["hooks"]
    assert not rows["openwebui_session"]["enabled"]


def test_routes_json_lists_every_route_with_its_access(capsys, config_file):
    code, out, _ = run(capsys, "routes", "--config", config_file, "--json")
    routes = json.loads(out)
    by_path = {(r["path"], tuple(r["methods"])): r for r in routes}
    assert by_path[("/health", ("GET",))]["access"] == "public"
    assert by_path[("/v1/chat/completions", ("POST",))]["access"] == "user"
    assert by_path[("/admin/keys", ("POST",))]["access"] == "admin"
    assert all(set(r) == {"path", "methods", "access", "plugin"} for r in routes)


def test_token_prints_a_token_the_portal_accepts(capsys, config_file):
    code, out, _ = run(capsys, "token", "--config", config_file, "--user", "zoe", "--role", "admin", "--ttl", "15m")
    assert code == 0
    from agent_portal import create_app

    app = create_app(config_file)
    response = app.test_client().get("/admin/keys", headers={"Authorization": f"Bearer {out.strip()}"})
    assert response.status_code == 200


def test_token_refuses_a_bad_ttl(capsys, config_file):
    code, _, err = run(capsys, "token", "--config", config_file, "--user", "zoe", "--ttl", "forever")
    assert code == 2 and "duration" in err


def test_keys_create_list_revoke(capsys, config_file):
    code, out, err = run(capsys, "keys", "create", "--config", config_file, "--owner", "bot", "--expires", "30d")
    created = json.loads(out)
    assert code == 0 and created["key"].startswith("ap-") and "not shown again" in err
    code, out, _ = run(capsys, "keys", "list", "--config", config_file)
    listed = json.loads(out)
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert run(capsys, "keys", "revoke", created["id"], "--config", config_file)[0] == 0
    assert run(capsys, "keys", "revoke", created["id"], "--config", config_file)[0] == 1


def test_serve_answers_ready_under_gunicorn_within_two_seconds(tmp_path):
    port = free_port()
    env = {**os.environ, "PORTAL_SECRET_KEY": "serve-secret-8d3f1a7c5e9b2046-b1e4", "PORTAL_WORKERS": "1",
           "PORTAL_GRACEFUL_SECONDS": "2", "PORTAL_DATABASE_URL": f"sqlite:///{tmp_path}/serve.db", "LITELLM_URL": "http://127.0.0.1:9"}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "agent_portal.cli", "serve", "--config",
                                str(ROOT / "config/portal.example.yaml"), "--port", str(port), "--workers", "1"],
                               env=env, stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT)
    try:
        ready_after = None
        while time.monotonic() - started < 20:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ready", timeout=0.5).status_code == 200:
                    ready_after = time.monotonic() - started
                    break
            except requests.RequestException:
                time.sleep(0.05)
        assert ready_after is not None, (tmp_path / "serve.log").read_text()
        # a generous bound for a loaded CI machine; the benchmark reports the real figure
        assert ready_after < 6
        answer = requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
        assert answer.status_code == 401
    finally:
        process.terminate()
        process.wait(15)


@pytest.mark.parametrize("command", [["serve"], ["check-config"], ["routes"], ["token", "--user", "a"],
                                     ["keys", "list"]])
def test_a_command_without_a_config_is_refused_clearly(capsys, monkeypatch, command):
    monkeypatch.delenv("AGENT_PORTAL_CONFIG", raising=False)
    code, out, err = run(capsys, *command)
    assert code == 2 and "no config" in err and "--config" in err and out == ""


def test_every_config_mistake_is_reported_in_one_go(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("portal:\n  secret_key: cli-secret-7d1e9b40c5a3f8e2a6b1c9d4\nbogus_setting: 1\n"
                    "plugins:\n  chat:\n    retries: many\n")
    code, _, err = run(capsys, "check-config", "--config", str(path))
    assert code == 1 and "bogus_setting" in err and "retries" in err


def test_a_config_with_a_key_twice_is_refused_naming_both_lines(capsys, tmp_path):
    # a section added above the example's own: YAML keeps the later one, the plugin silently off
    path = tmp_path / "twice.yaml"
    path.write_text("portal:\n  secret_key: cli-secret-7d1e9b40c5a3f8e2a6b1c9d4\nplugins:\n"
                    "  perplexica:\n    url: http://127.0.0.1:3000\n  chat: {}\n  perplexica: {enabled: false}\n")
    code, _, err = run(capsys, "check-config", "--config", str(path))
    assert code == 1 and "'perplexica' appears twice: on line 4 and on line 7" in err


def test_the_consoles_sign_in_hint_is_a_command_that_works(capsys, config_file):
    import re

    page = (ROOT / "plugins/static/dashboard.html").read_text()
    hint = re.search(r"<code>agent-portal (token[^<]*)</code>", page).group(1)
    argv = hint.replace("&lt;", "<").replace("&gt;", ">").replace("<you>", "zoe").split()
    code, out, err = run(capsys, *argv, "--config", config_file)
    assert code == 0 and out.strip().count(".") == 2, err  # a JWT


def test_up_with_a_broken_config_lists_every_mistake_and_starts_nothing(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("portal:\n  secret_key: short\nplugins:\n  nonsense: {}\n")
    litellm_port = free_port()
    code, out, err = run(capsys, "up", "--config", str(path), "--port", str(free_port()),
                         "--litellm-port", str(litellm_port),
                         "--litellm-bin", os.environ.get("LITELLM_BIN", str(ROOT / ".cache/litellm-venv/bin/litellm")))
    assert code == 1 and "Traceback" not in err
    assert "portal.secret_key" in err and "plugins.nonsense" in err  # every mistake, in one list
    assert "starting LiteLLM" not in out
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", litellm_port)) != 0  # nothing was started
