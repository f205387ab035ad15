"""What a newcomer meets in the first hour: the run command's banner pastes as printed, a taken
port is said before anything starts, the demo lists only demo models."""
from __future__ import annotations

import argparse
import socket
import sys

import pytest

from agent_portal.plugins.litellm.quickstart import _examples, port_taken, up

from conftest import ROOT


def test_the_banners_openai_example_pastes_as_printed():
    banner = _examples("http://127.0.0.1:8080", "tok.en.value", "/abs/portal.yaml", "/abs/.cache/portal-secret")
    start = banner.index("<<'PY'\n") + len("<<'PY'\n")
    code = banner[start:banner.index("\nPY\n", start)]
    assert code.splitlines()[0] == "import os"  # not indented: the here-document's end marker is found
    compile(code, "<banner>", "exec")  # no IndentationError
    assert "\nPY\n" in banner and "\n  PY" not in banner
    assert "export AGENT_PORTAL_CONFIG=/abs/portal.yaml" in banner
    assert 'export PORTAL_SECRET_KEY="$(cat /abs/.cache/portal-secret)"' in banner
    assert f"{sys.executable.rsplit('/', 1)[0]}/agent-portal keys" in banner


def test_a_taken_port_is_said_before_anything_starts():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert port_taken("127.0.0.1", port)
        args = argparse.Namespace(litellm_bin=sys.executable, config=None, host="127.0.0.1", port=port,
                                  litellm_port=port + 1 if not port_taken("127.0.0.1", port + 1) else 1,
                                  litellm_config="config/litellm.yaml", workers=1)
        with pytest.raises(SystemExit, match="--port"):
            up(args)
    assert not port_taken("127.0.0.1", port)


def test_the_demo_lists_no_test_only_model():
    import yaml

    demo = yaml.safe_load((ROOT / "config/litellm.yaml").read_text())
    assert [m["model_name"] for m in demo["model_list"]] == ["demo-chat", "demo-mini"]
    assert all("api_base" not in m["litellm_params"] for m in demo["model_list"])


def test_a_relative_sqlite_path_is_the_config_files_wherever_the_command_runs(tmp_path, monkeypatch):
    from agent_portal import create_app, portal_of

    folder = tmp_path / "project" / "config"
    folder.mkdir(parents=True)
    path = folder / "portal.yaml"
    path.write_text("portal:\n  secret_key: first-hour-secret-0123456789abcdef\n"
                    "  database_url: sqlite:///../data/portal.db\nplugins:\n  api_keys: {}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    portal = portal_of(create_app(str(path)))
    try:
        expected = tmp_path / "project" / "data" / "portal.db"
        assert portal.settings["database_url"] == f"sqlite:///{expected}"
        portal.database().connect().close()
        assert expected.exists() and not (elsewhere / "data").exists()
    finally:
        portal.shutdown()


def test_every_call_leaves_one_log_line_and_a_failed_one_a_warning(make_app, fake_upstream):
    import logging

    from conftest import bearer, chat_plugins, settled_rows

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append((record.levelname, record.getMessage()))

    app = make_app(**chat_plugins(fake_upstream))
    logger, collect = logging.getLogger("agent_portal.calls"), Collect()
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        for model in ("echo", "status-400"):
            app.test_client().post("/v1/chat/completions", headers=bearer(app, "alice"),
                                   json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
        settled_rows(app, 2)
    finally:
        logger.removeHandler(collect)
        logger.setLevel(logging.NOTSET)
    assert [level for level, _ in collect.lines] == ["INFO", "WARNING"]
    assert collect.lines[0][1].startswith("alice echo ok 200")
    assert "status-400 upstream_client_error 400" in collect.lines[1][1]


def test_the_call_log_line_carries_the_calls_request_id(make_app, fake_upstream, capsys):
    """The line is written off the request, so it names the call's request id itself."""
    import json
    import logging

    from conftest import bearer, chat_plugins, settled_rows

    app = make_app(**chat_plugins(fake_upstream))
    logging.getLogger("agent_portal").setLevel(logging.INFO)
    app.test_client().post("/v1/chat/completions", headers={**bearer(app, "alice"), "X-Request-ID": "call-77"},
                           json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    settled_rows(app, 1)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    calls = [line for line in lines if line.get("logger") == "agent_portal.calls"]
    assert len(calls) == 1 and calls[0]["request_id"] == "call-77"
    assert calls[0]["message"].startswith("alice echo ok 200")
