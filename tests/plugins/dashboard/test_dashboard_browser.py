"""The admin console at /dashboard in a real browser: Debian's chromium driven by playwright.

Every tab is opened against a live portal holding real calls made through it in the test, at a
laptop's width and a phone's; a console error or an element sticking out of its panel fails the
test, and each tab's screenshot is saved under tests/artifacts/.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ARTIFACTS, WEBUI_SECRET, bearer, chat_plugins, settled_rows

pytestmark = pytest.mark.integration
WIDTHS = {"laptop": 1280, "phone": 390}

# Everything inside a visible panel must stay inside it: tables scroll as a whole in their
# .table-wrap, long text wraps. The page itself must not scroll sideways.
OVERFLOW = """() => {
  const out = [];
  const panels = document.querySelectorAll("section.tab:not([hidden]) .panel, section.tab.panel:not([hidden])");
  for (const panel of panels) {
    if (panel.closest("[hidden]")) continue;
    const box = panel.getBoundingClientRect();
    for (const el of panel.querySelectorAll("*")) {
      if (el.closest(".table-wrap") && !el.classList.contains("table-wrap")) continue;
      if (el.closest("svg") && el.tagName.toLowerCase() !== "svg") continue;
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.right > box.right + 1 || r.left < box.left - 1) {
        out.push(`${panel.id || panel.className} > ${el.tagName.toLowerCase()}#${el.id}.${el.className}: ` +
                 `${Math.round(r.left)}..${Math.round(r.right)} outside ${Math.round(box.left)}..${Math.round(box.right)}`);
      }
    }
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) {
    out.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
  }
  return out;
}"""


@pytest.fixture
def console(make_app, fake_upstream, live_server, webui):
    """A portal with chat, keys, limits, an embedded UI, and real calls made through it."""
    from fake_admin_uis import FakeAdminUI

    ui = FakeAdminUI()
    prices = {"input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5}
    models = {"echo": {"backend": "fake", **prices},
              "premium": {"backend": "fake", "model": "echo-crlf", "roles": ["admin"], "fallbacks": ["echo"], **prices}}
    app = make_app(**chat_plugins(fake_upstream, models=models), dashboard={},
                   openwebui_session={"url": webui.url, "secret": WEBUI_SECRET},
                   rate_limits={"roles": {"user": {"requests_per_minute": 100, "daily_budget_usd": 5}}},
                   embeds={"uis": {"grafana": {"url": ui.url, "title": "Grafana"}}})
    client = app.test_client()
    calls = [("alice", "echo"), ("alice", "echo"), ("bob", "echo"), ("bob", "status-500")]
    for user, model in calls:
        client.post("/v1/chat/completions", headers=bearer(app, user),
                    json={"model": model, "messages": [{"role": "user", "content": "hello there"}]})
    settled_rows(app, len(calls))
    yield app, live_server(app)
    ui.stop()


def open_console(browser, app, server, width, tab="overview"):
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.goto(f"{server.url}/dashboard#{tab}")
    page.wait_for_selector("#auth:not([hidden])")
    page.fill("#token", bearer(app, "root", "admin")["Authorization"].split()[1])
    page.click("#token-form button")
    page.wait_for_selector("#console:not([hidden])")
    return page, problems


def make_key(page, **fields) -> str:
    """Fill the Keys tab's form (``owner``, ``name``, ``expires``, ``daily``...), create the key
    and return its secret, shown once."""
    page.wait_for_function("() => document.getElementById('keys-state').textContent === 'No API keys yet.'")
    for field, value in fields.items():
        page.fill(f"#key-{field}", value)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-secret:not([hidden])")
    return page.locator("#key-secret-value").inner_text()


def finish(page, problems, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)
    outside = page.evaluate(OVERFLOW)
    page.close()
    assert problems == [] and outside == []


@pytest.mark.parametrize("width", WIDTHS)
def test_overview_shows_health_chart_and_top_users_and_models(browser, console, width):
    app, server = console
    page, problems = open_console(browser, app, server, WIDTHS[width])
    assert page.locator("#who").inner_text() == "signed in as root (admin)"
    page.wait_for_selector("#users tbody tr")
    users = [row.split("\t") for row in page.locator("#users tbody tr").all_inner_texts()]
    assert {row[0]: row[1] for row in users} == {"alice": "2", "bob": "2"}
    costs = [row[3] for row in users]
    assert all(cost.startswith("$") and cost not in ("$0.0000", "$0") for cost in costs), costs
    assert [r.split("\t")[0] for r in page.locator("#models tbody tr").all_inner_texts()][:2] == ["echo", "status-500"]
    page.wait_for_selector("#health tbody tr")
    assert "ledger" in page.locator("#health").inner_text()
    assert page.locator("#chart rect.bar").count() == 7
    assert "4 calls, 1 errors" in page.locator("#totals").inner_text()
    finish(page, problems, f"overview-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_usage_filters_groups_totals_and_exports_csv(browser, console, width):
    app, server = console
    page, problems = open_console(browser, app, server, WIDTHS[width], "usage")
    page.wait_for_function("() => document.getElementById('usage-totals').textContent.includes('calls')")
    assert "4 calls" in page.locator("#usage-totals").inner_text()
    page.select_option("#usage-group", "user")
    page.fill("#usage-user", "bob")
    page.click("#usage-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('usage-totals').textContent.includes('2 calls')")
    assert [r.split("\t")[0] for r in page.locator("#usage-table tbody tr").all_inner_texts()] == ["bob"]
    page.fill("#usage-user", "")
    page.fill("#usage-backend", "nowhere")
    page.click("#usage-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('usage-state').textContent === 'No calls match.'")
    page.fill("#usage-backend", "")
    with page.expect_download() as download:
        page.click("#usage-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("source,user,requests") and any(line.startswith("ledger,alice,2") for line in lines)
    finish(page, problems, f"usage-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_calls_show_the_failed_call_in_full_and_live_calls(browser, console, width):
    app, server = console
    page, problems = open_console(browser, app, server, WIDTHS[width], "calls")
    page.wait_for_selector("#errors tbody tr")
    row = page.locator("#errors tbody tr").first.inner_text()
    failed = settled_rows(app, 4)
    failed = next(r for r in failed if r["outcome"] != "ok")
    assert failed["request_id"] in row and failed["outcome"] in row and failed["error"] in row
    page.fill("#errors-filter", "alice")
    assert page.locator("#errors tbody tr").count() == 0
    page.fill("#errors-filter", "")
    page.wait_for_selector("#live-state.up")
    app.test_client().post("/v1/chat/completions", headers=bearer(app, "carol"),
                           json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    page.wait_for_selector("#live li")
    assert "carol → echo: ok" in page.locator("#live li").first.inner_text()
    finish(page, problems, f"calls-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_keys_are_created_with_the_secret_shown_once_listed_and_revoked(browser, console, width):
    app, server = console
    page, problems = open_console(browser, app, server, WIDTHS[width], "keys")
    secret = make_key(page, owner="ci-bot", name="nightly build", expires="30d")
    assert secret.startswith("ap-")
    page.wait_for_selector("#keys tbody tr")
    assert "nightly build" in page.locator("#keys tbody tr").first.inner_text()
    assert secret not in page.locator("#keys").inner_text()
    me = app.test_client().get("/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json["user"] == "ci-bot"
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#keys tbody tr >> text=Revoke")
    page.wait_for_selector("#keys tbody tr >> text=revoked")
    assert app.test_client().get("/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    finish(page, problems, f"keys-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_limits_show_each_limit_with_its_current_use(browser, console, width):
    app, server = console
    page, problems = open_console(browser, app, server, WIDTHS[width], "limits")
    page.fill("#limits-user", "alice")
    page.click("#limits-form button")
    page.wait_for_function("() => document.getElementById('limits-storage').textContent.startsWith('alice')")
    rows = {r.split("\t")[1]: r.split("\t") for r in page.locator("#limits tbody tr").all_inner_texts()}
    assert rows["requests_per_minute"][2:5] == ["100", "2", "98"]
    assert rows["daily_budget_usd"][2] == "$5.00" and rows["daily_budget_usd"][3] not in ("$0", "$0.0000")
    finish(page, problems, f"limits-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_models_list_backend_roles_prices_and_fallbacks(browser, console, width):
    app, server = console
    page, problems = open_console(browser, app, server, WIDTHS[width], "models")
    page.wait_for_selector("#catalog tbody tr")
    rows = {r.split("\t")[0]: r.split("\t") for r in page.locator("#catalog tbody tr").all_inner_texts()}
    assert rows["echo (alias)"][1:4] == ["fake", "echo", "user, admin"]
    assert rows["echo (alias)"][4:6] == ["$2.50", "$10.00"]
    assert rows["premium (alias)"][2:4] == ["echo-crlf", "admin"] and rows["premium (alias)"][6] == "echo"
    finish(page, problems, f"models-{width}")


def test_an_embedded_admin_ui_is_a_tab_for_an_admin_signed_in_through_open_webui(browser, console, webui):
    app, server = console
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "token", "value": webui.login("root"), "url": server.url}])
    page = context.new_page()
    problems = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{server.url}/dashboard")
    page.wait_for_selector("#console:not([hidden])")
    assert page.locator("#who").inner_text() == "signed in as root (admin)"
    page.click("#tabs a >> text=Grafana")
    page.wait_for_selector("#tab-embed:not([hidden])")
    assert page.locator("#embed-frame").get_attribute("src") == "/embed/grafana/"
    frame = page.frame_locator("#embed-frame")
    frame.locator("text=admin ui").wait_for()  # the frame loads after the tab shows
    finish(page, problems, "embed-laptop")
    context.close()


def test_with_a_pasted_token_the_console_says_how_to_open_the_admin_uis(browser, console):
    app, server = console
    page, problems = open_console(browser, app, server, 1280)
    page.wait_for_selector("#embeds-hint:not([hidden])")
    assert page.locator("#tabs a.embed").count() == 0
    page.close()
    assert problems == []


def test_a_console_without_keys_limits_or_embeds_offers_no_tab_for_them(browser, make_app, fake_upstream,
                                                                        live_server):
    sections = chat_plugins(fake_upstream)
    del sections["api_keys"]
    app = make_app(**sections, dashboard={})
    server = live_server(app)
    page, problems = open_console(browser, app, server, 1280, "limits")  # asked for a tab that is off
    page.wait_for_function("() => document.getElementById('users-state').textContent === 'No calls in this range.'")
    assert page.locator("#tab-overview").is_visible() and page.locator("#tab-limits").is_hidden()
    assert [t for t in page.locator("#tabs a:visible").all_inner_texts()] == ["Overview", "Usage", "Calls", "Models"]
    page.click("#tabs a >> text=Models")
    page.wait_for_selector("#catalog tbody tr")
    finish(page, problems, "minimal-laptop")  # no request answered 404: no console error


def test_the_console_refuses_a_non_admin(browser, console):
    app, server = console
    page = browser.new_page()
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#auth:not([hidden])")
    page.fill("#token", bearer(app, "alice", "user")["Authorization"].split()[1])
    page.click("#token-form button")
    page.wait_for_function("() => document.getElementById('auth-error').textContent.includes('Admins only')")
    assert page.locator("#console").is_hidden()
    assert page.locator("#who").inner_text() == "alice (user): not an admin"
    page.close()


def test_the_console_without_credentials_asks_to_sign_in_and_opens_no_live_feed(browser, console):
    _, server = console
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#auth:not([hidden])")
    assert "Not signed in" in page.locator("#auth-error").inner_text()
    assert page.locator("#who").inner_text() == "not signed in"
    assert page.locator("#live-state").inner_text() == "waiting for sign-in"
    assert not any(url.endswith("/favicon.ico") or "/ws/events" in url for url in requests)
    page.close()
