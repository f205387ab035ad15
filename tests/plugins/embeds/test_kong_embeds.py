"""The Kong Admin API proxy and embedded admin UIs: access, read-only, rewriting, path escapes."""
from __future__ import annotations

import http.client
import json

import pytest

from conftest import bearer
from fake_admin_uis import FakeAdminUI, FakeKongAdmin


@pytest.fixture
def kong():
    fake = FakeKongAdmin()
    yield fake
    fake.stop()


@pytest.fixture
def ui():
    fake = FakeAdminUI()
    yield fake
    fake.stop()


@pytest.fixture
def app(make_app, kong, ui):
    return make_app(
        kong={"admin_url": kong.url, "allow_writes": [{"methods": ["POST"], "paths": ["/services"]}]},
        embeds={"uis": {"langfuse": {"url": ui.url, "title": "Langfuse",
                                     "headers": {"Authorization": "Basic dXBzdHJlYW0="}}}})


def admin(app):
    return bearer(app, "root", "admin")


# --- Kong ---------------------------------------------------------------------------------------


def test_kong_admin_api_is_proxied_for_admins_with_next_links_rewritten(app):
    answer = app.test_client().get("/kong-admin/services?size=2", headers=admin(app))
    assert answer.status_code == 200
    assert [s["id"] for s in answer.json["data"]] == ["svc-0", "svc-1"]
    assert answer.json["next"] == "/kong-admin/services?offset=2&size=2"
    following = app.test_client().get(answer.json["next"], headers=admin(app)).json
    assert [s["id"] for s in following["data"]] == ["svc-2", "svc-3"]


def test_kong_admin_api_refuses_anonymous_and_users(app, kong):
    client = app.test_client()
    assert client.get("/kong-admin/services").status_code == 401
    assert client.get("/kong-admin/services", headers=bearer(app)).status_code == 403
    assert kong.paths == []


def test_kong_writes_are_refused_unless_config_allows_them(app, kong):
    client = app.test_client()
    refused = client.delete("/kong-admin/services/svc-1", headers=admin(app))
    assert refused.status_code == 403 and refused.json["error"]["code"] == "read_only"
    assert client.patch("/kong-admin/routes/r1", json={}, headers=admin(app)).status_code == 403
    allowed = client.post("/kong-admin/services", json={"name": "new"}, headers=admin(app))
    assert allowed.status_code == 201
    assert kong.writes == [("/services", b'{"name": "new"}')]


def test_kong_read_only_by_default(make_app, kong):
    app = make_app(kong={"admin_url": kong.url})
    assert app.test_client().post("/kong-admin/services", json={}, headers=admin(app)).status_code == 403
    assert kong.writes == []


def test_kong_health_component(make_app, kong):
    app = make_app(kong={"admin_url": kong.url}, observability={"health_cache_seconds": 0})
    component = app.test_client().get("/observability/health", headers=admin(app)).json["components"]["kong"]
    assert component["status"] == "up" and component["version"] == "3.9.1"
    assert component["connections_active"] == 3


def test_kong_health_degraded_when_its_database_is_unreachable(make_app):
    fake = FakeKongAdmin(database_reachable=False)
    try:
        app = make_app(kong={"admin_url": fake.url}, observability={"health_cache_seconds": 0})
        component = app.test_client().get("/observability/health", headers=admin(app)).json["components"]["kong"]
        assert component["status"] == "degraded"
    finally:
        fake.stop()


# --- embeds -----------------------------------------------------------------------------------


def test_embeds_lists_what_an_admin_can_open(app):
    assert app.test_client().get("/embeds", headers=admin(app)).json == {
        "data": [{"name": "langfuse", "title": "Langfuse", "path": "/embed/langfuse/"}]}
    assert app.test_client().get("/embeds", headers=bearer(app)).status_code == 403


def test_embed_strips_framing_refusal_and_sets_the_portals_policy(app):
    page = app.test_client().get("/embed/langfuse/", headers=admin(app))
    assert page.status_code == 200 and page.data == b"<html>admin ui</html>"
    assert "X-Frame-Options" not in page.headers
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" not in csp and "frame-ancestors 'self'" in csp
    assert "default-src 'self'" in csp


def test_embed_rewrites_cookies_into_its_prefix(app):
    cookies = app.test_client().get("/embed/langfuse/", headers=admin(app)).headers.getlist("Set-Cookie")
    assert "ap_embed_langfuse__sid=abc; Path=/embed/langfuse/; HttpOnly" in cookies
    assert "ap_embed_langfuse__pref=dark; Path=/embed/langfuse/settings" in cookies
    assert all("Domain" not in c for c in cookies)


@pytest.mark.parametrize("path,location", [
    ("/embed/langfuse/login", "/embed/langfuse/dashboard?x=1"),
    ("/embed/langfuse/relative", "/embed/langfuse/other"),
    ("/embed/langfuse/elsewhere", "https://idp.example.com/auth"),
])
def test_embed_rewrites_redirects_into_its_prefix(app, path, location):
    answer = app.test_client().get(path, headers=admin(app))
    assert answer.status_code == 302 and answer.headers["Location"] == location


def test_embed_never_forwards_portal_credentials_and_adds_upstream_ones(app, ui):
    client = app.test_client()
    client.set_cookie("token", "portal-session-token")
    client.set_cookie("theme", "light")  # the portal site's own cookie, not the embedded UI's
    client.set_cookie("ap_embed_langfuse__sid", "abc")  # set by the UI through this proxy
    seen = client.get("/embed/langfuse/echo?q=1", headers=admin(app)).json
    assert seen["path"] == "/echo?q=1"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["authorization"] == "Basic dXBzdHJlYW0="
    assert headers["cookie"] == "sid=abc"


def test_embed_never_forwards_identity_headers_a_proxy_would_vouch_for(app):
    sent = {"X-Forwarded-For": "10.0.0.1", "X-Forwarded-User": "admin", "X-Real-IP": "10.0.0.2",
            "Remote-User": "admin", "X-WEBAUTH-USER": "admin", "X-HTTP-Method-Override": "DELETE",
            "Forwarded": "for=10.0.0.3", "X-Auth-Request-Email": "root@example.com", "X-Custom": "kept",
            "X-Client-Cert": "-----BEGIN CERTIFICATE-----", "X-Ssl-Client-Cert": "cert", "X-SSL-Client-DN": "CN=root",
            "X-Original-Forwarded-For": "10.0.0.4", "X-Api-Key": "ap-someone-elses-key"}
    seen = app.test_client().get("/embed/langfuse/echo", headers={**admin(app), **sent}).json
    forwarded = {k.lower() for k in seen["headers"]}
    assert "x-custom" in forwarded
    assert forwarded.isdisjoint({k.lower() for k in sent} - {"x-custom"})


@pytest.mark.parametrize("path,allowed", [("/services", True), ("/services/abc", True),
                                          ("/services/abc/routes", False), ("/plugins", False),
                                          ("/services/a/plugins/b", True)])
def test_kong_write_patterns_match_one_segment_per_star(path, allowed):
    from agent_portal.plugins.kong import write_allowed

    settings = {"allow_writes": [{"methods": ["POST"], "paths": ["/services", "/services/*",
                                                                  "/services/**/plugins/*"]}]}
    assert write_allowed(settings, "POST", path) is allowed


def test_embed_streams_large_bodies_both_ways(app):
    client = app.test_client()
    big = client.get("/embed/langfuse/big", headers=admin(app))
    assert len(big.data) == 300_000
    posted = client.post("/embed/langfuse/upload", data=b"y" * 200_000, headers=admin(app))
    assert posted.json == {"received": 200_000}


def test_embed_asks_once_more_when_the_service_drops_a_read_but_never_resends_a_write(app, ui):
    client = app.test_client()
    read = client.get("/embed/langfuse/drop-once/page", headers=admin(app))
    assert read.status_code == 200 and read.data == b"second time"
    write = client.post("/embed/langfuse/drop-once/form", headers=admin(app), data=b"x=1")
    assert write.status_code == 502 and write.json["error"]["code"] == "upstream_unreachable"
    assert [p for p, _ in ui.seen].count("/drop-once/form") == 1


def test_embed_refuses_anonymous_users_and_unknown_names(app):
    client = app.test_client()
    assert client.get("/embed/langfuse/").status_code == 401
    assert client.get("/embed/langfuse/", headers=bearer(app)).status_code == 403
    assert client.get("/embed/nothing/", headers=admin(app)).status_code == 404


@pytest.mark.parametrize("raw_path", [
    "/embed/langfuse/../../etc/passwd",
    "/embed/langfuse/a/../../secret",
    "/embed/langfuse/%2e%2e/secret",
    "/embed/langfuse/%2E%2E%2Fsecret",
    "/embed/langfuse/a%2fb",
    "/embed/langfuse/a%5cb",
    "/embed/langfuse/..%5c..%5csecret",
    "/embed/langfuse//evil.example.com/x",
    "/embed/langfuse/http://evil.example.com/x",
    "/embed/langfuse/a\\..\\b",
    "/embed/langfuse/./echo",
    "/kong-admin/../status",
    "/kong-admin/%2e%2e/status",
    "/kong-admin//evil.example.com",
])
def test_paths_that_try_to_leave_the_upstream_are_refused(app, live_server, ui, kong, raw_path):
    server = live_server(app)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.putrequest("GET", raw_path, skip_accept_encoding=True)
    connection.putheader("Authorization", admin(app)["Authorization"])
    connection.endheaders()
    answer = connection.getresponse()
    body = answer.read()
    assert answer.status in (400, 404), (raw_path, answer.status, body)
    if answer.status == 400:
        assert json.loads(body)["error"]["code"] in ("path_escape", "bad_path")
    assert not any("secret" in path or "passwd" in path or "evil" in path for path, _ in ui.seen)
    assert not any("evil" in path for path in kong.paths)
