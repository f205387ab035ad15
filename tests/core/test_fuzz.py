"""Every operation of /openapi.json fuzzed by schemathesis against a live portal, as a user and as
an admin, bounded in examples and time: no 500, every answer matching the schema its route declares
and every JSON error in the portal's shape. The services behind the plugins are not running here,
so their 502s are expected answers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from agent_portal import create_app, portal_of

from conftest import TESTS, bearer
from helpers import every_builtin_plugin

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served_portal(tmp_path_factory, fake_upstream):
    """The portal with every built-in plugin, served as in production (gunicorn, gevent)."""
    from fake_webui import FakeOpenWebUI

    from conftest import WEBUI_SECRET, base_config
    from helpers import start_portal

    folder = tmp_path_factory.mktemp("fuzz")
    webui = FakeOpenWebUI(WEBUI_SECRET)
    config = base_config(folder, **every_builtin_plugin(fake_upstream, webui))
    config["plugins"]["documents"] = {"store": {"path": str(folder / "vectors")}}
    path = folder / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    metrics = folder / "metrics"
    metrics.mkdir()
    process, base = start_portal(path, {"PROMETHEUS_MULTIPROC_DIR": str(metrics)}, workers=1)
    app = create_app(str(path))
    yield base, app
    portal_of(app).shutdown()
    process.terminate()
    process.wait(20)
    webui.stop()


@pytest.mark.parametrize("role", ["user", "admin"])
def test_every_operation_survives_a_bounded_fuzz_run(served_portal, role, tmp_path):
    binary = shutil.which("schemathesis", path=os.path.dirname(sys.executable))
    if binary is None:
        pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
    base, app = served_portal
    token = bearer(app, "fuzzer", role)["Authorization"]
    run = subprocess.run(
        [binary, "run", f"{base}/openapi.json", "--header", f"Authorization: {token}",
         "--checks", "no_internal_error,errors_in_the_portal_shape,response_schema_conformance", "--max-examples", "5",
         "--request-timeout", "20", "--exclude-path-regex", "^/ws/|/events$", "--seed", "20261126",
         "--no-color"],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_checks", "PYTHONPATH": str(TESTS)},
        capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache stays out of the checkout
    summary = run.stdout[run.stdout.find("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    failures = run.stdout[run.stdout.find("FAILURES"):] if "FAILURES" in run.stdout else run.stdout
    assert run.returncode == 0, failures[:6000] + summary[-3000:] + run.stderr[-2000:]
    assert "Tested:" in summary
