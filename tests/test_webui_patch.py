"""The Open WebUI Monitoring patch applies to the 0.12.4 sources recovered from the wheel."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def test_monitoring_patch_applies_to_open_webui_0_12_4():
    result = subprocess.run([sys.executable, str(ROOT / "webui_patch/check_patch.py")], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "monitoring.patch applies to Open WebUI 0.12.4" in result.stdout


def test_patch_keeps_open_webui_branding_and_uses_the_session_token():
    patch = (ROOT / "webui_patch/monitoring.patch").read_text()
    removed = [line for line in patch.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert removed == []  # only additions: nothing of Open WebUI's (branding included) is changed
    assert "localStorage.token" in patch and "/observability/usage" in patch and "/observability/health" in patch
    assert 'href="/admin/monitoring"' in patch
