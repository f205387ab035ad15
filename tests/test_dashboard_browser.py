"""The dashboard in a real browser: Debian's chromium driven by playwright."""
from __future__ import annotations

import os
import shutil
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent_portal import ChatRecord, portal_of

from conftest import bearer, chat_plugins

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        message = f"chromium is not installed at {CHROMIUM} (scripts/setup.sh --browser installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def seeded(make_app, fake_upstream, live_server):
    app = make_app(**chat_plugins(fake_upstream), dashboard={})
    portal = portal_of(app)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    seed = [("alice", "echo", 0.5, "ok"), ("alice", "echo", 0.25, "ok"), ("bob", "gpt-x", 1.0, "ok"),
            ("bob", "gpt-x", 0.0, "upstream_reset")]
    for user, model, cost, outcome in seed:
        portal.dispatcher.submit(ChatRecord(
            request_id=uuid.uuid4().hex, actor_id=user, actor_role="user", model=model, backend="fake",
            prompt_tokens=10, completion_tokens=20, cost=cost, duration=0.2, outcome=outcome,
            error=None if outcome == "ok" else "connection reset mid-answer", started_at=now.timestamp()))
    deadline = time.monotonic() + 5
    while portal.dispatcher.delivered < len(seed) and time.monotonic() < deadline:
        time.sleep(0.01)
    portal.extensions["ledger"].writer.flush_once()
    return app, live_server(app)


def sign_in(page, server, token):
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#auth:not([hidden])")
    page.fill("#token", token)
    page.click("#token-form button")


def test_dashboard_shows_the_seeded_ledger_to_an_admin(browser, seeded):
    app, server = seeded
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, server, bearer(app, "root", "admin")["Authorization"].split()[1])
    page.wait_for_selector("#users tbody tr")
    users = page.locator("#users tbody tr").all_inner_texts()
    assert users[0].split("\t")[:4] == ["bob", "2", "20 / 40", "$1.0000"]
    assert users[1].split("\t")[:4] == ["alice", "2", "20 / 40", "$0.7500"]
    models = page.locator("#models tbody tr").all_inner_texts()
    assert [m.split("\t")[0] for m in models] == ["gpt-x", "echo"]
    page.wait_for_selector("#health tbody tr")
    assert "ledger" in page.locator("#health").inner_text()
    assert page.locator("#chart rect.bar").count() == 7  # one per day of the default range
    assert "4 calls, 1 errors, $1.7500" in page.locator("#totals").inner_text()
    page.wait_for_selector("#errors tbody tr")
    assert "connection reset mid-answer" in page.locator("#errors").inner_text()
    assert page.locator("#who").inner_text() == "signed in as root (admin)"

    page.wait_for_selector("#live-state.up")
    app.test_client().post("/v1/chat/completions", headers=bearer(app, "carol"),
                           json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    page.wait_for_selector("#live li")
    assert "carol → echo: ok" in page.locator("#live li").first.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert errors == []
    page.close()


def test_dashboard_refuses_a_non_admin(browser, seeded):
    app, server = seeded
    page = browser.new_page()
    sign_in(page, server, bearer(app, "alice", "user")["Authorization"].split()[1])
    # before the token is in, the same element says "Not signed in": wait for the answer to it
    page.locator("#users-state.error", has_text="Admins only").wait_for()
    assert page.locator("#users tbody tr").count() == 0
    page.wait_for_selector("#live-state.down")
    assert page.locator("#live-state").inner_text() == "not allowed"
    page.close()


def test_dashboard_without_credentials_asks_to_sign_in(browser, seeded):
    _, server = seeded
    page = browser.new_page()
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#auth:not([hidden])")
    assert "Not signed in" in page.locator("#auth-error").inner_text()
    page.close()
