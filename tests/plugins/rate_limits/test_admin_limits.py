"""Limits an admin sets at runtime (``/admin/limits``), keys with limits of their own, Open
WebUI's groups as teams, and the audit trail of every admin change."""
from __future__ import annotations

import copy
import time

import pytest

from agent_portal import Route, hookimpl, portal_of
from agent_portal.schemas import obj

from conftest import base_config, bearer, chat_plugins, settled_rows
from limits_calls import PRICED, chat, settled, wait_for

ROOT = ("root", "admin")


def admin(app):
    return bearer(app, *ROOT)


def put(app, scope, ident, body, headers=None):
    return app.test_client().put(f"/admin/limits/{scope}/{ident}", json=body, headers=headers or admin(app))


def call_with_key(app, key, model="echo"):
    response = app.test_client().post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                      json={"model": model, "messages": [{"role": "user", "content": "hi"}],
                                            "max_tokens": 5})
    response.get_data()
    return response


def audit_rows(app, **query):
    return app.test_client().get("/admin/audit", query_string=query, headers=admin(app)).json["data"]


@pytest.fixture
def portal_app(make_app, fake_upstream):
    def build(**rate_limits):
        return make_app(**chat_plugins(fake_upstream, models=PRICED), audit={},
                        rate_limits={"refresh_seconds": 0.3, **rate_limits})
    return build


# --- the API ----------------------------------------------------------------------------------


def test_a_limit_set_at_runtime_holds_at_once_and_replaces_the_configs(portal_app):
    app = portal_app(users={"ann": {"requests_per_minute": 100, "tokens_per_minute": 10_000}})
    assert put(app, "users", "ann", {"requests_per_minute": 2}).json["source"] == "runtime"
    assert [chat(app, user="ann").status_code for _ in range(3)] == [200, 200, 429]
    listed = {(e["scope"], e["id"]): e for e in app.test_client().get("/admin/limits", headers=admin(app)).json["data"]}
    ann = listed[("users", "ann")]
    assert ann["limits"] == {"requests_per_minute": 2} and ann["changed_by"] == "root"
    assert ann["config"] == {"requests_per_minute": 100, "tokens_per_minute": 10_000}


def test_deleting_a_config_limit_lifts_it_and_the_listing_says_so(portal_app):
    app = portal_app(users={"ann": {"requests_per_minute": 1}})
    assert chat(app, user="ann").status_code == 200 and chat(app, user="ann").status_code == 429
    gone = app.test_client().delete("/admin/limits/users/ann", headers=admin(app))
    assert gone.json == {"scope": "users", "id": "ann", "deleted": True, "config_lifted": True}
    assert chat(app, user="ann").status_code == 200
    [entry] = [e for e in app.test_client().get("/admin/limits", headers=admin(app)).json["data"] if e["id"] == "ann"]
    assert entry["source"] == "lifted" and entry["limits"] is None
    assert app.test_client().delete("/admin/limits/users/ann", headers=admin(app)).status_code == 404


@pytest.mark.parametrize("scope, ident, body, status, code", [
    ("users", "ann", {"requests_per_minute": 0}, 400, "invalid_limits"),
    ("users", "ann", {"requests_per_minute": "5"}, 400, "invalid_limits"),
    ("users", "ann", {"rpm": 5}, 400, "invalid_limits"),
    ("users", "ann", [], 400, "invalid_limits"),
    ("users", "ann", {"models": ["x" * 201]}, 400, "invalid_limits"),
    ("roles", "owner", {"requests_per_minute": 5}, 400, "invalid_role"),
    ("models", "echo", {"models": ["echo"]}, 400, "invalid_limits"),
    ("teams", "ann", {"requests_per_minute": 5}, 404, "unknown_scope"),
])
def test_a_limit_the_api_cannot_hold_is_refused_and_nothing_changes(portal_app, scope, ident, body, status, code):
    app = portal_app()
    refused = put(app, scope, ident, body)
    assert (refused.status_code, refused.json["error"]["code"]) == (status, code)
    assert app.test_client().get("/admin/limits", headers=admin(app)).json["data"] == []
    assert audit_rows(app) == []


def test_only_an_admin_reads_or_changes_limits(portal_app):
    app = portal_app()
    assert app.test_client().get("/admin/limits", headers=bearer(app, "ann")).status_code == 403
    assert put(app, "users", "ann", {"requests_per_minute": 99}, headers=bearer(app, "ann")).status_code == 403
    assert app.test_client().delete("/admin/limits/users/ann", headers=bearer(app, "ann")).status_code == 403
    assert app.test_client().put("/admin/limits/users/ann", json={}).status_code == 401


def test_a_models_list_allows_only_those_models(portal_app):
    app = portal_app()
    put(app, "users", "ann", {"models": ["metered"]})
    refused = chat(app, user="ann")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "model_forbidden"
    assert chat(app, user="ann", model="metered").status_code == 200
    assert chat(app, user="bob").status_code == 200


def test_a_limit_changed_on_one_instance_holds_on_another_within_the_refresh(tmp_path, fake_upstream, redis_url):
    config = base_config(tmp_path, **chat_plugins(fake_upstream), audit={},
                         rate_limits={"storage": redis_url, "refresh_seconds": 0.5})
    from agent_portal import create_app
    first, second = create_app(copy.deepcopy(config)), create_app(copy.deepcopy(config))
    try:
        assert [chat(second, user="shared").status_code for _ in range(3)] == [200] * 3  # read: no limits
        assert put(first, "users", "shared", {"requests_per_minute": 1}).status_code == 200
        changed_at = time.monotonic()
        assert wait_for(lambda: chat(second, user="shared").status_code == 429, seconds=3)
        assert time.monotonic() - changed_at < 1.5
        # the requests the two instances count are one (Redis): the first instance refuses too
        assert chat(first, user="shared").status_code == 429
    finally:
        portal_of(first).shutdown()
        portal_of(second).shutdown()


def test_a_budget_lowered_below_what_is_spent_refuses_the_next_call(portal_app):
    app = portal_app(users={"ann": {"daily_budget_usd": 100}})
    portal = portal_of(app)
    assert chat(app, user="ann", model="metered").status_code == 200
    settled(portal, 1)
    limiter = portal.extensions["rate_limits"]
    spent = limiter.spend("ann", "daily_budget_usd")
    assert spent > 0
    put(app, "users", "ann", {"daily_budget_usd": spent / 2})
    refused = chat(app, user="ann", model="metered")
    assert refused.status_code == 429 and refused.json["error"]["code"] == "daily_budget_usd"
    assert limiter.spend("ann", "daily_budget_usd") == pytest.approx(spent)  # the refusal held nothing back


def test_a_call_admitted_before_a_budget_change_settles_once_against_the_same_counter(portal_app):
    import threading

    app = portal_app(users={"ann": {"daily_budget_usd": 100}})
    limiter = portal_of(app).extensions["rate_limits"]
    answers = []
    long_prompt = [{"role": "user", "content": "a long question about cooling towers " * 40}]  # estimated
    call = threading.Thread(target=lambda: answers.append(  # at ~300 tokens; the fake reports 7; 1 s long
        chat(app, user="ann", model="metered", max_tokens=5, stream=True, messages=long_prompt)))
    call.start()
    assert wait_for(lambda: limiter.spend("ann", "daily_budget_usd") > 0, seconds=2)  # its estimate reserved
    reserved = limiter.spend("ann", "daily_budget_usd")
    put(app, "users", "ann", {"daily_budget_usd": 50})
    call.join()
    [row] = settled_rows(app, 1)
    assert answers[0].status_code == 200 and row["cost"] > 0
    assert row["cost"] < reserved  # the estimate was replaced by what the call used, once
    assert limiter.spend("ann", "daily_budget_usd") == pytest.approx(row["cost"])


# --- keys with their own limits -------------------------------------------------------------------


def test_a_key_past_its_budget_is_refused_while_its_owners_other_key_still_works(portal_app):
    app = portal_app()
    client = app.test_client()
    capped = client.post("/admin/keys", headers=admin(app), json={"owner": "ann", "limits": {"daily_budget_usd": 1}}).json
    other = client.post("/admin/keys", headers=admin(app), json={"owner": "ann"}).json
    assert call_with_key(app, capped["key"], "metered").status_code == 200
    settled(portal_of(app), 1)
    listed = {k["id"]: k for k in client.get("/admin/keys", headers=admin(app)).json["data"]}
    spent = listed[capped["id"]]["spent_usd_this_month"]
    assert spent > 0 and listed[other["id"]]["spent_usd_this_month"] == 0
    put(app, "keys", capped["id"], {"daily_budget_usd": spent / 2})
    refused = call_with_key(app, capped["key"], "metered")
    assert refused.status_code == 429 and refused.json["error"]["code"] == "daily_budget_usd"
    assert "key" in refused.json["error"]["message"]
    assert call_with_key(app, other["key"], "metered").status_code == 200
    settled_rows(app, 3)
    by_key = client.get("/observability/usage", query_string={"group_by": "key"}, headers=admin(app)).json["data"]
    assert {row["key"]: row["requests"] for row in by_key} == {capped["id"]: 2, other["id"]: 1}


def test_a_key_carries_its_rate_models_and_expiry(portal_app):
    app = portal_app()
    client = app.test_client()
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    created = client.post("/admin/keys", headers=admin(app), json={
        "owner": "ann", "expires_at": soon, "limits": {"requests_per_minute": 2, "models": ["echo"]}})
    assert created.status_code == 201 and created.json["expires_at"].startswith(soon[:16])
    key = created.json["key"]
    assert call_with_key(app, key, "metered").json["error"]["code"] == "model_forbidden"
    assert [call_with_key(app, key).status_code for _ in range(3)] == [200, 200, 429]  # a refused model is not a request
    time.sleep(2.1)
    expired = call_with_key(app, key)
    assert expired.status_code == 401 and expired.json["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("body, code", [
    ({"owner": "ann", "expires_at": "2001-01-01T00:00:00Z"}, "invalid_time"),
    ({"owner": "ann", "expires_at": "next week"}, "invalid_time"),
    ({"owner": "ann", "expires_at": "2099-01-01", "expires_in": "1d"}, "invalid_request"),
    ({"owner": "ann", "limits": {"daily_budget_usd": -1}}, "invalid_limits"),
])
def test_a_key_with_limits_or_expiry_it_cannot_have_is_not_created(portal_app, body, code):
    app = portal_app()
    refused = app.test_client().post("/admin/keys", headers=admin(app), json=body)
    assert (refused.status_code, refused.json["error"]["code"]) == (400, code)
    assert app.test_client().get("/admin/keys", headers=admin(app)).json["data"] == []


# --- usage by kind -------------------------------------------------------------------------------


def test_usage_groups_and_filters_by_kind(portal_app):
    from agent_portal import ChatRecord

    app = portal_app()
    portal = portal_of(app)
    for model, backend in (("echo", "fake"), ("agent:helper", "langgraph"), ("all-minilm-l6-v2", "documents"),
                           ("docs:manual", "documents"), ("tool:files/read", "mcp")):
        portal.dispatcher.submit(ChatRecord(request_id="r", actor_id="ann", actor_role="user", model=model,
                                            backend=backend, outcome="ok", status=200))
    settled_rows(app, 5)
    client = app.test_client()
    by_kind = client.get("/observability/usage", query_string={"group_by": "kind"}, headers=admin(app)).json["data"]
    assert {row["kind"]: row["requests"] for row in by_kind} == {
        "chat": 1, "agent": 1, "embedding": 1, "documents": 1, "tool": 1}
    chats = client.get("/observability/usage", query_string={"kind": "agent", "group_by": "model"},
                       headers=admin(app)).json["data"]
    assert [row["model"] for row in chats] == ["agent:helper"]
    bad = client.get("/observability/usage", query_string={"kind": "lunch"}, headers=admin(app))
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_kind"


# --- the audit trail -----------------------------------------------------------------------------


def test_every_admin_change_leaves_one_audit_row_with_before_and_after(portal_app):
    app = portal_app(users={"ann": {"requests_per_minute": 5}})
    client = app.test_client()
    put(app, "users", "ann", {"requests_per_minute": 9})
    client.delete("/admin/limits/users/ann", headers=admin(app))
    created = client.post("/admin/keys", headers=admin(app), json={"owner": "bob", "limits": {"daily_budget_usd": 2}}).json
    client.patch(f"/admin/keys/{created['id']}", headers=admin(app), json={"expires_at": "2099-01-01T00:00:00Z"})
    client.delete(f"/admin/keys/{created['id']}", headers=admin(app))
    # refused changes and a user's own calls leave nothing
    put(app, "users", "ann", {"requests_per_minute": -1})
    put(app, "users", "ann", {"requests_per_minute": 1}, headers=bearer(app, "ann"))
    client.delete("/admin/keys/no-such-key", headers=admin(app))
    chat(app, user="ann")
    rows = audit_rows(app)
    assert [(r["action"], r["target"], r["actor"]) for r in rows] == [
        ("keys.revoke", f"keys/{created['id']}", "root"),
        ("keys.expiry", f"keys/{created['id']}", "root"),
        ("keys.create", f"keys/{created['id']}", "root"),
        ("limits.delete", "users/ann", "root"),
        ("limits.put", "users/ann", "root")]
    assert (rows[4]["before"], rows[4]["after"]) == ({"requests_per_minute": 5}, {"requests_per_minute": 9})
    assert (rows[3]["before"], rows[3]["after"]) == ({"requests_per_minute": 9}, None)
    assert rows[2]["before"] is None and rows[2]["after"]["limits"] == {"daily_budget_usd": 2}
    assert rows[1]["after"]["expires_at"].startswith("2099-01-01")
    assert rows[0]["before"]["revoked_at"] is None and rows[0]["after"]["revoked_at"]
    assert all("key" not in r["after"] for r in rows[:3] if r["after"])  # the new key itself never
    assert all(r["request_id"] for r in rows)
    assert [r["action"] for r in audit_rows(app, action="keys.", limit=2)] == ["keys.revoke", "keys.expiry"]
    assert audit_rows(app, before=rows[3]["id"]) == rows[4:]
    assert app.test_client().get("/admin/audit", headers=bearer(app, "ann")).status_code == 403


class _SettingsPlugin:
    """An admin route that changes something and says nothing of it, and a user route."""

    name = "settings-plugin"

    @hookimpl
    def portal_register_routes(self, portal):
        def change():
            return {"ok": True}

        return [Route("/admin/settings", change, methods=("POST",), access="admin", responses={"200": obj()}),
                Route("/my/settings", change, name="mine", methods=("POST",), access="user",
                      responses={"200": obj()})]


def test_an_admin_change_its_view_does_not_describe_is_recorded_with_its_body_secrets_masked(make_app):
    app = make_app(audit={}, plugins=[_SettingsPlugin()])
    client = app.test_client()
    body = {"url": "http://example", "api_key": "sk-very-secret", "nested": [{"password": "hunter22"}]}
    assert client.post("/admin/settings", json=body, headers=admin(app)).status_code == 200
    assert client.post("/my/settings", json=body, headers=bearer(app, "ann")).status_code == 200
    [row] = audit_rows(app)
    assert (row["action"], row["target"]) == ("POST /admin/settings", "/admin/settings")
    assert row["after"] == {"url": "http://example", "api_key": "***", "nested": [{"password": "***"}]}


def test_an_admins_sharing_of_a_collection_is_on_the_trail_and_its_owners_own_is_not(make_app, fake_upstream,
                                                                                    tmp_path):
    from documents_worker import worker_sections

    app = make_app(**chat_plugins(fake_upstream), audit={}, documents=worker_sections(tmp_path))
    client = app.test_client()
    made = client.post("/documents/collections", json={"name": "runbooks"}, headers=bearer(app, "ann")).json
    sharing = f"/documents/collections/{made['id']}/sharing"
    assert client.put(sharing, json={"users": ["bob"]}, headers=bearer(app, "ann")).status_code == 200
    assert client.put(sharing, json={"roles": ["user"]}, headers=admin(app)).status_code == 200
    [row] = audit_rows(app)
    assert (row["action"], row["target"], row["actor"]) == ("documents.share", f"collections/{made['id']}", "root")
    assert row["before"] == {"roles": [], "users": ["bob"], "groups": []}
    assert row["after"] == {"roles": ["user"], "users": [], "groups": []}


def test_while_the_database_cannot_answer_the_limits_read_last_stay_in_force(portal_app):
    import sqlalchemy as sa

    app = portal_app()
    put(app, "users", "ann", {"requests_per_minute": 1})
    runtime = portal_of(app).extensions["rate_limits"].runtime
    runtime.engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/gone")
    time.sleep(0.4)  # past refresh_seconds: the next call asks the database, which cannot answer
    assert [chat(app, user="ann").status_code for _ in range(2)] == [200, 429]
    assert runtime.outage.state() is not None
