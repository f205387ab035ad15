"""A newcomer's first run, end to end: the README's run command in the background, the examples
its banner prints executed exactly as printed, the call in the usage, and a clean stop."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import ROOT, free_port, missing_service

pytestmark = pytest.mark.integration


def _bash(script: str, timeout: float = 60) -> str:
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def running_portal(tmp_path):
    if not (ROOT / ".cache/litellm-venv/bin/litellm").exists():
        missing_service("LiteLLM is not installed (scripts/setup.sh installs it)")
    log = tmp_path / "run.log"
    port, litellm_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("AGENT_PORTAL_CONFIG", "PORTAL_SECRET_KEY")}
    process = subprocess.Popen(["bash", "scripts/run.sh", "--port", str(port), "--litellm-port", str(litellm_port)],
                               cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while "Stop with Ctrl-C." not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the run command printed no banner in 300 s"
        time.sleep(0.5)
    yield process, log.read_text()
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise


def test_the_banners_examples_work_as_printed_and_the_run_stops_cleanly(running_portal):
    process, banner = running_portal
    export = re.search(r"^export PORTAL_TOKEN=\S+$", banner, re.M).group(0)
    curl = re.search(r"^curl -N .*?}]}'$", banner, re.M | re.S).group(0)
    streamed = _bash(f"{export}\n{curl}\n")
    chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert "data: [DONE]" in streamed and "offline demo model" in text
    snippet = re.search(r"^\S+python\S* - <<'PY'\n.*?\nPY$", banner, re.M | re.S).group(0)
    printed = _bash(f"{export}\n{snippet}\n")
    assert "offline demo model" in printed
    usage_line = re.search(r'^What it cost, per user and model:\s+(curl .*)$', banner, re.M).group(1)
    deadline = time.monotonic() + 20
    rows = []
    while time.monotonic() < deadline:
        rows = [r for r in json.loads(_bash(f"{export}\n{usage_line}\n"))["data"] if r.get("model") == "demo-chat"]
        if rows and rows[0]["requests"] >= 2:
            break
        time.sleep(0.5)
    assert rows and rows[0]["requests"] >= 2 and rows[0]["user"] == "admin", rows
    os.killpg(process.pid, signal.SIGINT)
    started = time.monotonic()
    process.wait(20)
    assert time.monotonic() - started < 15
