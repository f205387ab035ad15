"""What a newcomer meets in the first hour: the run command's banner pastes as printed, a taken
port is said before anything starts, the demo lists only demo models."""
from __future__ import annotations

import argparse
import socket
import sys

import pytest

from agent_portal.plugins.litellm.quickstart import _examples, port_taken, up


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
    from pathlib import Path

    demo = yaml.safe_load((Path(__file__).resolve().parent.parent / "config/litellm.yaml").read_text())
    assert [m["model_name"] for m in demo["model_list"]] == ["demo-chat", "demo-mini"]
    assert all("api_base" not in m["litellm_params"] for m in demo["model_list"])
