"""Embedded admin UIs rendered in the console, in chromium: the real LiteLLM UI under its root
path, and a root-only UI on a host of its own."""
from __future__ import annotations

import pytest

from conftest import ARTIFACTS, WEBUI_SECRET, chat_plugins

pytestmark = pytest.mark.integration


def test_the_real_litellm_ui_renders_in_its_tab_and_the_portal_fails_none_of_its_requests(
        browser, make_app, litellm, fake_upstream, live_server, webui):
    import requests

    from fixtures_services import LITELLM_EMBED_PATH

    app = make_app(**chat_plugins(fake_upstream), dashboard={},
                   openwebui_session={"url": webui.url, "secret": WEBUI_SECRET},
                   embeds={"uis": {"litellm": {"url": litellm["url"] + LITELLM_EMBED_PATH, "page": "ui/",
                                               "title": "LiteLLM"}}})
    server = live_server(app)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "token", "value": webui.login("root"), "url": server.url}])
    page = context.new_page()
    errors, failed, asked = [], [], []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    # "Failed to load resource" repeats a failed response, judged below with the others
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
            and not msg.text.startswith("Failed to load resource") else None)
    page.on("requestfailed", lambda req: None if req.failure == "net::ERR_ABORTED"  # a prefetch left behind
            else failed.append((req.url, req.failure)))
    page.on("response", lambda r: asked.append((r.request.method, r.url, r.status)))
    page.goto(f"{server.url}/dashboard")
    page.wait_for_selector("#console:not([hidden])")
    page.click("#tabs a >> text=LiteLLM")
    assert page.locator("#embed-frame").get_attribute("src") == "/embed/litellm/ui/"
    frame = page.frame_locator("#embed-frame")
    # drawn by its scripts at run time: its sign-in form, or its navigation when it takes a session
    frame.locator("input[type=password], nav >> text=Virtual Keys").first.wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-embed-litellm.png"))
    context.close()
    ui_requests = [(m, u, s) for m, u, s in asked if "/embed/litellm/" in u]
    assert sum(u.endswith(".js") and s == 200 for _, u, s in ui_requests) >= 10
    assert sum(u.endswith(".css") and s == 200 for _, u, s in ui_requests) >= 1
    # a request that failed must fail the same way asked of LiteLLM itself (which serves the
    # same paths under its root path): none may fail because of the portal
    direct = litellm["url"]
    portal_made = [(m, u, s) for m, u, s in asked if s >= 400 and requests.request(
        m, direct + u[len(server.url):], timeout=10).status_code != s]
    assert (errors, failed, portal_made) == ([], [], [])


def test_a_root_only_ui_on_a_host_of_its_own_renders_in_its_tab(browser, make_app, fake_upstream, live_server,
                                                                webui):
    from fake_admin_uis import FakeNextApp

    helicone = FakeNextApp(base_path="")  # its scripts at its root: a host of its own (Kong routes one)
    try:
        app = make_app(**chat_plugins(fake_upstream), dashboard={},
                       openwebui_session={"url": webui.url, "secret": WEBUI_SECRET},
                       embeds={"uis": {"helicone": {"url": helicone.url, "public_url": helicone.url,
                                                    "title": "Helicone"}}})
        server = live_server(app)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "token", "value": webui.login("root"), "url": server.url}])
        page = context.new_page()
        problems = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
        page.goto(f"{server.url}/dashboard")
        page.wait_for_selector("#console:not([hidden])")
        page.click("#tabs a >> text=Helicone")
        assert page.locator("#embed-frame").get_attribute("src") == helicone.url + "/"
        # drawn by a chunk its first script loads at run time
        page.frame_locator("#embed-frame").locator("#app >> text=Sign in").wait_for()
        context.close()
        assert problems == []
        assert "/_next/static/chunks/late.js" in helicone.seen
    finally:
        helicone.stop()
