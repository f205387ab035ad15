"""Open WebUI's patched Monitoring page, compiled and rendered in chromium against a live portal.

The page and its API helper are the patched 0.12.4 files (webui_patch/check_patch.py --patched),
compiled with the Svelte release Open WebUI's build used, bundled by esbuild into a minimal
harness (tests/webui_harness: the session token in localStorage, the i18n context) and styled by
Tailwind's CLI from the page's own classes; the rest of Open WebUI is not needed to show what the
page shows. Screenshots go to tests/artifacts/.
"""
from __future__ import annotations

import functools
import re
import http.server
import socket
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, TESTS, base_config, bearer, chat_plugins, settled_rows
from conftest import ARTIFACTS

pytestmark = pytest.mark.integration
HARNESS = TESTS / "webui_harness"
SVELTE = "5.56.0"  # what Open WebUI 0.12.4's build used (check_patch.py reads it from the wheel)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Build the harness once; returns the folder it is served from."""
    patched, out = tmp_path_factory.mktemp("patched"), tmp_path_factory.mktemp("harness")
    applied = subprocess.run([sys.executable, str(ROOT / "webui_patch/check_patch.py"), "--patched", str(patched)],
                             capture_output=True, text=True, timeout=900)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    modules = ROOT / ".cache" / f"webui-compile-{SVELTE}"
    if not (modules / "node_modules" / "@tailwindcss" / "cli").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(modules),
                        "esbuild@0.25", "tailwindcss@4", "@tailwindcss/cli@4"], check=True, timeout=600)
    built = subprocess.run(["node", str(HARNESS / "build.mjs"), str(modules / "node_modules"), str(patched), str(out)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def portal(make_app, fake_upstream, live_server, harness, tmp_path):
    """A portal holding real calls, which lets the harness's origin call it (portal.cors_origins),
    as an Open WebUI on another origin would be configured."""
    prices = {"input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5}
    config = base_config(tmp_path, **chat_plugins(fake_upstream, models={"echo": {"backend": "fake", **prices}}))
    config["portal"]["cors_origins"] = [harness]
    app = make_app(config=config)
    client = app.test_client()
    for user, model in [("alice", "echo"), ("alice", "echo"), ("bob", "echo"), ("bob", "status-500")]:
        client.post("/v1/chat/completions", headers=bearer(app, user),
                    json={"model": model, "messages": [{"role": "user", "content": "hello there"}]})
    settled_rows(app, 4)
    return app, live_server(app)


def open_page(browser, harness, token, portal_url):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{harness}/index.html?token={token}&portal={portal_url}")
    return page, errors


def test_the_monitoring_page_shows_real_usage_and_health(browser, harness, portal):
    app, server = portal
    token = bearer(app, "root", "admin")["Authorization"].split()[1]
    page, errors = open_page(browser, harness, token, server.url)
    page.wait_for_selector("text=Usage by user")
    body = page.locator("#app").inner_text()
    assert "alice" in body and "bob" in body and "echo" in body and "status-500" in body
    assert "ledger" in body and not re.search(r"\$0\.0000(?!\d)", body)  # a metered call's cost shows
    assert "4 calls" in body
    bars = page.locator('[role="img"] > div > div:first-child')
    heights = [bars.nth(i).bounding_box()["height"] for i in range(bars.count())]
    assert len(heights) == 7 and heights[-1] > 50 and max(heights[:-1]) == 0  # one bar a day, today's full
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webui-monitoring.png"), full_page=True)
    page.close()
    assert errors == []


def test_the_monitoring_page_says_it_is_loading_while_the_portal_answers(browser, harness, portal):
    app, server = portal
    token = bearer(app, "root", "admin")["Authorization"].split()[1]
    page = browser.new_page(viewport={"width": 1100, "height": 600})
    held = []
    page.route("**/observability/**", lambda route: held.append(route))
    page.goto(f"{harness}/index.html?token={token}&portal={server.url}")
    page.wait_for_selector("text=Loading...")
    page.screenshot(path=str(ARTIFACTS / "webui-monitoring-loading.png"))
    for route in held:
        route.continue_()
    page.close()


def test_the_monitoring_page_shows_an_error_when_the_portal_is_down(browser, harness, portal):
    app, _ = portal
    token = bearer(app, "root", "admin")["Authorization"].split()[1]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"  # nothing listens there
    page, _errors = open_page(browser, harness, token, down)
    page.wait_for_selector(".text-red-600")
    assert f"Agent Portal cannot be reached at {down}." in page.locator(".text-red-600").first.inner_text()
    assert page.locator("table").count() == 0
    page.screenshot(path=str(ARTIFACTS / "webui-monitoring-down.png"))
    page.close()
