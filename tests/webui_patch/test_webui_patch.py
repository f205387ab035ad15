"""The Open WebUI Monitoring patch applies to the 0.12.4 sources recovered from the wheel and
compiles with the Svelte release that Open WebUI's build used."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.integration


def check_patch(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "webui_patch/check_patch.py"), *args], capture_output=True,
                          text=True, timeout=900)


def test_monitoring_patch_applies_to_open_webui_0_12_4_and_compiles():
    result = check_patch()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "monitoring.patch applies to Open WebUI 0.12.4" in result.stdout
    assert "monitoring.patch compiles with Svelte 5.56.0 and TypeScript: no error, no new warning" in result.stdout


@pytest.mark.parametrize("line,broken,expected", [
    ("+\t\t\t\t\t{/each}\n", "+\t\t\t\t\t{/if}\n", "error"),
    ("+\t\t\t<div class=\"text-gray-500\">{$i18n.t('Loading...')}</div>\n", "+\t\t\t<img src=\"x.png\">\n",
     "warning: a11y_missing_attribute"),
])
def test_a_patch_that_breaks_the_build_fails_the_check(tmp_path, line, broken, expected):
    patch = (ROOT / "webui_patch/monitoring.patch").read_text()
    assert line in patch
    (tmp_path / "broken.patch").write_text(patch.replace(line, broken, 1))
    result = check_patch("--patch", str(tmp_path / "broken.patch"))
    assert result.returncode == 1 and "broken.patch applies" in result.stdout
    assert "broken.patch does NOT compile with Svelte 5.56.0" in result.stderr and expected in result.stderr


def test_patch_keeps_open_webui_branding_and_uses_the_session_token():
    patch = (ROOT / "webui_patch/monitoring.patch").read_text()
    removed = [line for line in patch.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert removed == []  # only additions: nothing of Open WebUI's (branding included) is changed
    assert "localStorage.token" in patch and "/observability/usage" in patch and "/observability/health" in patch
    assert 'href="/admin/monitoring"' in patch
