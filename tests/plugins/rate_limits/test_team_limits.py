"""Open WebUI's groups as teams: read from a stand-in that serves 0.12.4's group API, a user in
several groups, an inherited group, and a member removed in Open WebUI."""
from __future__ import annotations

import time

from agent_portal import portal_of

from conftest import bearer, chat_plugins
from limits_calls import chat, wait_for

REFRESH = 0.5


def team_app(make_app, fake_upstream, webui, api_key, **limits):
    return make_app(**chat_plugins(fake_upstream), audit={},
                    openwebui_groups={"url": webui.url, "api_key": api_key, "refresh_seconds": REFRESH},
                    rate_limits={"refresh_seconds": 0.3, **limits})


def one_team(make_app, fake_upstream, webui, group, member, **limits):
    """An app reading Open WebUI's groups with an admin's key, ``member`` alone in ``group``."""
    webui.add_user("boss", role="admin")
    webui.add_user(member)
    webui.add_group(group, members=[member])
    app = team_app(make_app, fake_upstream, webui, webui.add_api_key("boss"), **limits)
    assert groups_read(app)
    return app


def groups_read(app):
    directory = portal_of(app).extensions["openwebui_groups"]
    return wait_for(lambda: directory.read_at is not None, seconds=5)


def test_a_group_limit_holds_for_members_of_it_and_of_groups_under_it_until_removed(make_app, fake_upstream, webui):
    for user in ("boss", "ann", "bob", "cy"):
        webui.add_user(user, role="admin" if user == "boss" else "user")
    eng = webui.add_group("engineering")
    research = webui.add_group("research", parent=eng, members=["ann"])
    webui.add_group("ml", members=["ann", "bob"])
    webui.add_group("design", members=["cy"])
    app = team_app(make_app, fake_upstream, webui, webui.add_api_key("boss"),
                   groups={"engineering": {"requests_per_minute": 1}})
    assert groups_read(app)
    directory = portal_of(app).extensions["openwebui_groups"]
    assert directory.groups_of(_actor("ann")) == ["engineering", "ml", "research"]
    assert [chat(app, user="ann").status_code for _ in range(2)] == [200, 429]  # engineering, inherited
    assert [chat(app, user="bob").status_code for _ in range(2)] == [200, 200]  # ml only
    limits = app.test_client().get("/observability/limits", headers=bearer(app, "ann")).json["limits"]
    assert {"scope": "group", "id": "engineering", "limit": "requests_per_minute", "value": 1}.items() \
        <= limits[-1].items()

    webui.remove_member(research, "ann")
    assert wait_for(lambda: chat(app, user="ann").status_code == 200, seconds=REFRESH * 6)


def test_a_group_limit_set_at_runtime_holds_for_its_members(make_app, fake_upstream, webui):
    app = one_team(make_app, fake_upstream, webui, "support", "dee")
    assert [chat(app, user="dee").status_code for _ in range(2)] == [200, 200]
    app.test_client().put("/admin/limits/groups/support", json={"models": ["nothing-here"]},
                          headers=bearer(app, "root", "admin"))
    refused = chat(app, user="dee")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "model_forbidden"
    assert "group support" in refused.json["error"]["message"]


def test_a_member_is_matched_by_email_as_an_api_keys_owner(make_app, fake_upstream, webui):
    app = one_team(make_app, fake_upstream, webui, "ops", "eve", groups={"ops": {"requests_per_minute": 1}})
    key = app.test_client().post("/admin/keys", json={"owner": "eve@example.com"},
                                 headers=bearer(app, "root", "admin")).json["key"]
    statuses = [app.test_client().post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                       json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
                                       ).status_code for _ in range(2)]
    assert statuses == [200, 429]


def test_groups_read_with_a_key_that_is_not_an_admins_say_so_and_grant_no_team(make_app, fake_upstream, webui):
    webui.add_user("ann")
    webui.add_group("research", members=["ann"])
    app = team_app(make_app, fake_upstream, webui, webui.add_api_key("ann"),
                   groups={"research": {"requests_per_minute": 1}})
    time.sleep(REFRESH)
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    groups = health["components"]["openwebui_groups"]
    assert groups["status"] == "degraded" and "401" in groups["detail"]
    assert [chat(app, user="ann").status_code for _ in range(2)] == [200, 200]


def test_while_open_webui_cannot_answer_the_membership_read_last_holds(make_app, fake_upstream, webui):
    app = one_team(make_app, fake_upstream, webui, "research", "ann", groups={"research": {"requests_per_minute": 1}})
    webui.groups_unavailable = True
    time.sleep(REFRESH * 3)
    assert [chat(app, user="ann").status_code for _ in range(2)] == [200, 429]
    health = app.test_client().get("/observability/health", headers=bearer(app, "root", "admin")).json
    assert "membership read last holds" in health["components"]["openwebui_groups"]["detail"]


def _actor(user_id):
    from agent_portal import Actor

    return Actor(id=user_id, role="user", via="test")


def test_a_model_named_for_a_group_is_for_its_members_and_the_roles_it_names(make_app, fake_upstream, webui):
    webui.add_user("boss", role="admin")
    for user in ("ann", "bob"):
        webui.add_user(user)
    lab = webui.add_group("lab", members=["ann"])
    models = {"lab-model": {"backend": "fake", "model": "echo-crlf", "groups": ["lab"], "roles": ["admin"]}}
    app = make_app(**chat_plugins(fake_upstream, models=models),
                   openwebui_groups={"url": webui.url, "api_key": webui.add_api_key("boss"), "refresh_seconds": REFRESH})
    assert groups_read(app)
    assert chat(app, user="ann", model="lab-model").status_code == 200
    assert chat(app, user="root", role="admin", model="lab-model").status_code == 200
    refused = chat(app, user="bob", model="lab-model")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "model_forbidden"
    assert chat(app, user="bob", model="echo-crlf").status_code == 403  # its upstream name too
    listed = app.test_client().get("/v1/models", headers=bearer(app, "bob")).json["data"]
    assert "lab-model" not in {m["id"] for m in listed}
    catalog = app.test_client().get("/admin/models", headers=bearer(app, "root", "admin")).json["data"]
    [entry] = [m for m in catalog if m["model"] == "lab-model"]
    assert (entry["roles"], entry["groups"]) == (["admin"], ["lab"])
    webui.remove_member(lab, "ann")
    assert wait_for(lambda: chat(app, user="ann", model="lab-model").status_code == 403, seconds=REFRESH * 6)


def test_a_collection_shared_with_a_group_is_read_by_its_members_only(make_app, fake_upstream, webui, tmp_path):
    from documents_worker import worker_sections

    webui.add_user("boss", role="admin")
    for user in ("ann", "bob", "cy"):
        webui.add_user(user)
    team = webui.add_group("support", members=["bob"])
    app = make_app(**chat_plugins(fake_upstream), documents=worker_sections(tmp_path),
                   openwebui_groups={"url": webui.url, "api_key": webui.add_api_key("boss"), "refresh_seconds": REFRESH})
    assert groups_read(app)
    client = app.test_client()
    made = client.post("/documents/collections", json={"name": "runbooks"}, headers=bearer(app, "ann")).json
    shared = client.put(f"/documents/collections/{made['id']}/sharing", json={"groups": ["support"]},
                        headers=bearer(app, "ann")).json
    assert shared["shared_with"] == {"roles": [], "users": [], "groups": ["support"]}

    def readers():
        return {user for user in ("bob", "cy") if any(
            c["id"] == made["id"] for c in client.get("/documents/collections", headers=bearer(app, user)).json["collections"])}

    assert readers() == {"bob"}
    webui.remove_member(team, "bob")
    assert wait_for(lambda: readers() == set(), seconds=REFRESH * 6)
