"""Every operation of /openapi.json fuzzed by schemathesis against a live portal, as a user and as
an admin, bounded in examples and time: no 500, and every JSON error in the portal's shape. The
services behind the plugins are not running here, so their 502s are expected answers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import bearer
from test_auth import every_builtin_plugin

pytestmark = pytest.mark.integration
TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("role", ["user", "admin"])
def test_every_operation_survives_a_bounded_fuzz_run(make_app, fake_upstream, webui, live_server, role, tmp_path):
    binary = shutil.which("schemathesis", path=os.path.dirname(sys.executable))
    if binary is None:
        pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
    app = make_app(**every_builtin_plugin(fake_upstream, webui))
    server = live_server(app)
    token = bearer(app, "fuzzer", role)["Authorization"]
    run = subprocess.run(
        [binary, "run", f"{server.url}/openapi.json", "--header", f"Authorization: {token}",
         "--checks", "no_internal_error,errors_in_the_portal_shape", "--max-examples", "5",
         "--request-timeout", "10", "--exclude-path-regex", "^/ws/|/events$", "--seed", "20261126",
         "--no-color"],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_checks", "PYTHONPATH": str(TESTS)},
        capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache stays out of the checkout
    summary = run.stdout[run.stdout.find("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested:" in summary
