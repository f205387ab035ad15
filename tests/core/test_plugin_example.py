"""The plugin example in README.md, loaded exactly as written there."""
from __future__ import annotations

import re
import sys

import pytest

from agent_portal import create_app, portal_of
from agent_portal.observe import run_health

from conftest import ROOT, base_config, bearer

README = ROOT / "README.md"


@pytest.fixture
def readme_plugin(tmp_path, monkeypatch):
    text = README.read_text()
    source = re.search(r"```python\n# my_portal_plugin.py\n(.*?)```", text, re.S).group(1)
    site = tmp_path / "site"
    site.mkdir()
    (site / "my_portal_plugin.py").write_text(source)
    dist = site / "my_portal_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-portal-plugin\nVersion: 0.1\n")
    entry = re.search(r"agent_portal =\n    (\w+) = (\w+)", text)
    (dist / "entry_points.txt").write_text(f"[agent_portal]\n{entry.group(1)} = {entry.group(2)}\n")
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("my_portal_plugin", None)


def test_readme_plugin_loads_and_serves_its_route(readme_plugin, tmp_path):
    app = create_app(base_config(tmp_path, greeter={"greeting": "hi there"}))
    client = app.test_client()
    assert client.get("/greet").status_code == 401
    assert client.get("/greet", headers=bearer(app)).json == {"greeting": "hi there"}
    assert run_health(portal_of(app))["components"]["greeter"]["status"] == "up"


def test_readme_plugin_default_setting_applies(readme_plugin, tmp_path):
    app = create_app(base_config(tmp_path))
    assert app.test_client().get("/greet", headers=bearer(app)).json == {"greeting": "hello"}
