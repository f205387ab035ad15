"""The console as a control panel, in chromium at a laptop's and a phone's width: a limit edited,
a key made with a budget and refused past it, a failed file retried, the audit trail read. Each
fails on a console error or an element outside its panel (see test_dashboard_browser)."""
from __future__ import annotations

import pytest

from conftest import ARTIFACTS, bearer, chat_plugins, settled_rows
from documents_worker import make_collection, upload, worker_sections
from test_dashboard_browser import WIDTHS, finish, make_key, open_console

pytestmark = pytest.mark.integration
PRICES = {"input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5}


@pytest.fixture
def managed(make_app, fake_upstream, live_server):
    app = make_app(**chat_plugins(fake_upstream, models={"echo": {"backend": "fake", **PRICES}}), dashboard={},
                   audit={}, rate_limits={"refresh_seconds": 0.5, "roles": {"user": {"requests_per_minute": 100}}})
    return app, live_server(app)


def chat_as(app, headers, max_tokens=5):
    response = app.test_client().post("/v1/chat/completions", headers=headers, json={
        "model": "echo", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hello there"}]})
    response.get_data()
    return response


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_edits_a_limit_and_it_holds_at_once(browser, managed, width):
    app, server = managed
    page, problems = open_console(browser, app, server, WIDTHS[width], "limits")
    page.wait_for_selector('#all-limits tbody tr[data-limit="roles/user"]')
    assert "config" in page.locator('#all-limits tbody tr[data-limit="roles/user"]').inner_text()
    page.select_option("#edit-scope", "users")
    page.fill("#edit-id", "alice")
    page.fill("#edit-rpm", "1")
    page.fill("#edit-models", "echo")
    page.click("#limit-edit button[type=submit]")
    page.wait_for_selector('#all-limits tbody tr[data-limit="users/alice"]')
    row = page.locator('#all-limits tbody tr[data-limit="users/alice"]').inner_text().split("\t")
    assert row[:3] == ["users", "alice", "1"] and row[6] == "echo" and row[7] == "runtime"
    assert "Saved the limits of users/alice" in page.locator("#all-limits-state").inner_text()
    assert [chat_as(app, bearer(app, "alice")).status_code for _ in range(2)] == [200, 429]
    page.click('#all-limits tbody tr[data-limit="roles/user"] >> text=Edit')  # the form takes a row's values
    assert (page.input_value("#edit-id"), page.input_value("#edit-rpm")) == ("user", "100")
    finish(page, problems, f"limits-edit-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_key_made_with_a_budget_is_refused_past_it_and_its_spend_shows(browser, managed, width):
    app, server = managed
    page, problems = open_console(browser, app, server, WIDTHS[width], "keys")
    key = {"Authorization": f"Bearer {make_key(page, owner='ci-bot', name='budgeted', daily='0.0002')}"}
    page.wait_for_selector("#keys tbody tr")
    assert "$0.0002/day" in page.locator("#keys tbody tr").first.inner_text()
    statuses = []
    while len(statuses) < 20 and 429 not in statuses:
        statuses.append(chat_as(app, key).status_code)
    refused = chat_as(app, key)
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    assert refused.json["error"]["code"] == "daily_budget_usd" and "key daily budget" in refused.json["error"]["message"]
    assert chat_as(app, bearer(app, "ci-bot")).status_code == 200  # the owner's other ways in still work
    settled_rows(app, len(statuses) + 2)
    page.reload()
    page.wait_for_selector("#keys tbody tr")
    spent = page.locator("#keys tbody tr").first.inner_text().split("\t")[7]
    assert spent.startswith("$") and spent != "$0"
    finish(page, problems, f"keys-budget-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_reads_the_audit_tab(browser, managed, width):
    app, server = managed
    client, root = app.test_client(), bearer(app, "root", "admin")
    client.put("/admin/limits/groups/research", json={"daily_budget_usd": 3}, headers=root)
    client.post("/admin/keys", json={"owner": "ann", "name": "notebook"}, headers=root)
    page, problems = open_console(browser, app, server, WIDTHS[width], "audit")
    page.wait_for_selector("#audit tbody tr")
    rows = [r.split("\t") for r in page.locator("#audit tbody tr").all_inner_texts()]
    assert [(r[1], r[2]) for r in rows] == [("root", "keys.create"), ("root", "limits.put")]
    assert rows[1][3] == "groups/research" and rows[1][4] == "—" and rows[1][5] == '{"daily_budget_usd":3}'
    page.select_option("#audit-action", "limits.")
    page.click("#audit-form button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#audit tbody tr').length === 1")
    finish(page, problems, f"audit-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_retries_a_failed_file_from_the_documents_tab(browser, make_app, fake_upstream, live_server,
                                                                 with_worker, tmp_path, width):
    app = with_worker(make_app(**chat_plugins(fake_upstream), dashboard={}, audit={},
                               documents=worker_sections(tmp_path, max_text_chars=1000)))
    server = live_server(app)
    client, alice = app.test_client(), bearer(app, "alice")
    collection = make_collection(client, alice, "manuals")
    [failed] = upload(client, alice, collection, ("long.txt", b"A sentence on the cooling towers. " * 40)).json["files"]
    upload(client, alice, collection, ("short.txt", b"The towers are cleaned in May."))
    assert failed["status"] == "failed"
    page, problems = open_console(browser, app, server, WIDTHS[width], "documents")
    row = page.locator(f'#documents tbody tr[data-file="{failed["id"]}"]')
    row.wait_for()
    assert "failed" in row.inner_text() and "documents.max_text_chars" in row.inner_text()
    assert "1 failed, 1 ready" in page.locator("#documents-totals").inner_text()
    page.screenshot(path=str(ARTIFACTS / f"console-documents-failed-{width}.png"), full_page=True)
    row.locator("text=Retry").click()
    page.wait_for_function("() => document.getElementById('documents-state').textContent.includes('queued again')")
    audit = client.get("/admin/audit", headers=bearer(app, "root", "admin")).json["data"]
    assert [(a["action"], a["target"], a["before"]["status"]) for a in audit] == [
        ("documents.retry", f"files/{failed['id']}", "failed")]
    page.select_option("#documents-status", "ready")
    page.click("#documents-form button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#documents tbody tr').length === 1")
    finish(page, problems, f"documents-{width}")


def test_the_agents_tab_lists_each_users_threads_with_their_runs(browser, make_app, fake_upstream, langgraph_url,
                                                                  live_server):
    app = make_app(**chat_plugins(fake_upstream), dashboard={}, langgraph={"url": langgraph_url})
    client = app.test_client()
    threads = {user: client.post("/agents/threads", json={}, headers=bearer(app, user)).json["thread_id"]
               for user in ("agent-ann", "agent-bob")}
    ran = client.post(f"/agents/threads/{threads['agent-ann']}/runs/wait", headers=bearer(app, "agent-ann"),
                      json={"assistant_id": "chatty", "input": {"messages": [{"role": "user", "content": "hi"}]}})
    assert ran.status_code == 200, ran.data
    page, problems = open_console(browser, app, live_server(app), 1280, "agents")
    page.fill("#agents-user", "agent-ann")
    page.click("#agents-form button")
    page.wait_for_function("() => document.querySelectorAll('#agents tbody tr').length === 1")
    row = page.locator("#agents tbody tr").first
    assert row.inner_text().split("\t")[:2] == ["agent-ann", threads["agent-ann"]]
    row.locator("text=Show runs").click()
    page.wait_for_function("() => document.querySelector('#agents tbody tr').textContent.includes('success')")
    page.fill("#agents-user", "")  # every user's (the test server is shared: other tests' threads too)
    page.click("#agents-form button")
    page.wait_for_function("() => document.querySelectorAll('#agents tbody tr').length >= 2")
    assert {r.split("\t")[0] for r in page.locator("#agents tbody tr").all_inner_texts()} >= {"agent-ann", "agent-bob"}
    finish(page, problems, "agents-laptop")
