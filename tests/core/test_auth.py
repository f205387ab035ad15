"""Who is calling, and what each role may do: every credential source and the attacks on them."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import sqlalchemy as sa

from agent_portal import portal_of
from agent_portal.plugin_manager import discover_builtins
from agent_portal.plugins.api_keys import store_of

from conftest import WEBUI_SECRET, bearer, chat_plugins
from helpers import HEADER_SECRET, every_builtin_plugin


@pytest.fixture
def app(make_app, webui, fake_upstream):
    return make_app(openwebui_session={"url": webui.url, "secret": WEBUI_SECRET, "cache_seconds": 0.3},
                    openwebui_header={"secret": HEADER_SECRET}, **chat_plugins(fake_upstream))


def get_models(app, headers=None, **kw):
    return app.test_client().get("/v1/models", headers=headers or {}, **kw)


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict, claims: dict, key: bytes | None = None) -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = _b64(hmac.new(key, head.encode(), hashlib.sha256).digest()) if key else ""
    return head + "." + signature


# --- Open WebUI session tokens -------------------------------------------------------------------


def test_webui_session_token_gives_the_role_from_open_webui(app, webui):
    response = get_models(app, auth(webui.login("alice")))
    assert response.status_code == 200
    admin_keys = app.test_client().get("/admin/keys", headers=auth(webui.login("root")))
    assert admin_keys.status_code == 200


def test_webui_session_token_in_the_cookie_is_accepted(app, webui):
    client = app.test_client()
    client.set_cookie("token", webui.login("alice"))
    assert client.get("/v1/models").status_code == 200


def test_webui_role_lookup_is_cached_per_token(app, webui):
    token = webui.login("alice")
    for _ in range(5):
        assert get_models(app, auth(token)).status_code == 200
    assert webui.calls == 1


def test_revoked_webui_session_stops_working_after_the_cache_time(app, webui):
    token = webui.login("alice")
    assert get_models(app, auth(token)).status_code == 200
    webui.change_password("alice")
    time.sleep(0.4)
    response = get_models(app, auth(token))
    assert response.status_code == 401
    assert response.json["error"]["code"] == "session_revoked"


def test_pending_webui_user_is_refused(app, webui):
    response = get_models(app, auth(webui.login("newbie")))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "pending_user"


def test_unreachable_open_webui_is_503_never_a_pass(app, webui):
    token = webui.login("alice")
    webui.stop()
    response = get_models(app, auth(token))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "identity_provider_unavailable"


@pytest.mark.parametrize("case", ["wrong_secret", "expired", "not_yet_valid", "no_exp", "no_id",
                                  "alg_none", "hs256_with_public_key", "rs256", "garbage"])
def test_forged_or_broken_session_tokens_are_refused(app, webui, case):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = int(time.time())
    if case == "wrong_secret":
        token = webui.login("alice", secret="not-the-secret-at-all-0000000000000000000")
    elif case == "expired":
        token = webui.login("alice", exp=now - 10, iat=now - 100)
    elif case == "not_yet_valid":
        token = webui.login("alice", nbf=now + 600)
    elif case == "no_exp":
        token = webui.login("alice", exp=None)
    elif case == "no_id":
        token = webui.login("alice", id=None)
    elif case == "alg_none":
        token = _unsigned({"alg": "none", "typ": "JWT"}, {"id": "root", "exp": now + 60, "iat": now})
    elif case in ("hs256_with_public_key", "rs256"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        claims = {"id": "root", "exp": now + 60, "iat": now}
        if case == "rs256":
            token = jwt.encode(claims, private, algorithm="RS256")
        else:
            token = _unsigned({"alg": "HS256", "typ": "JWT"}, claims, key=public_pem)
    else:
        token = "abc.def.ghi"
    response = get_models(app, auth(token))
    assert response.status_code == 401, response.json
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert webui.calls == 0  # refused locally, before asking Open WebUI


def test_token_over_8kb_is_refused(app, webui):
    token = webui.login("alice", padding="x" * 9000)
    response = get_models(app, auth(token))
    assert response.status_code == 401
    assert response.json["error"]["code"] == "token_too_large"


def test_token_in_the_query_string_is_not_accepted(app, webui):
    token = webui.login("alice")
    for name in ("token", "access_token"):
        response = app.test_client().get(f"/v1/models?{name}={token}")
        assert response.status_code == 401
        assert response.json["error"]["code"] == "token_in_url"


def test_non_bearer_authorization_scheme_is_refused(app):
    response = get_models(app, {"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401


# --- Open WebUI's signed user header -----------------------------------------------------------


def signed_header(role="user", sub="alice", secret=HEADER_SECRET, iss="open-webui", ttl=300, **extra):
    now = int(time.time())
    claims = {"sub": sub, "email": f"{sub}@example.com", "name": sub, "role": role, "iss": iss,
              "iat": now, "exp": now + ttl, **extra}
    return {"X-OpenWebUI-User-Jwt": jwt.encode(claims, secret, algorithm="HS256")}


def test_signed_user_header_gives_its_role(app):
    assert get_models(app, signed_header()).status_code == 200
    assert app.test_client().get("/admin/keys", headers=signed_header(role="admin")).status_code == 200
    assert app.test_client().get("/admin/keys", headers=signed_header(role="user")).status_code == 403


@pytest.mark.parametrize("bad", [{"secret": "another-secret-entirely-0000000000000000"}, {"iss": "someone-else"},
                                 {"ttl": -10}, {"ttl": 86400}, {"role": "superuser"}])
def test_bad_signed_user_headers_are_refused(app, bad):
    assert get_models(app, signed_header(**bad)).status_code == 401


def test_forged_plain_openwebui_headers_are_ignored(app):
    forged = {"X-OpenWebUI-User-Id": "root", "X-OpenWebUI-User-Role": "admin",
              "X-OpenWebUI-User-Email": "root@example.com", "X-OpenWebUI-User-Name": "Root"}
    response = app.test_client().get("/admin/keys", headers=forged)
    assert response.status_code == 401


# --- portal tokens ---------------------------------------------------------------------------------


def test_portal_token_carries_its_role(app):
    assert app.test_client().get("/admin/keys", headers=bearer(app, "ops", "admin")).status_code == 200
    assert app.test_client().get("/admin/keys", headers=bearer(app, "bob", "user")).status_code == 403


def test_portal_token_with_a_forged_role_fails_the_signature(app):
    token = bearer(app, "bob", "user")["Authorization"].split()[1]
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["role"] = "admin"
    forged = ".".join([head, _b64(json.dumps(claims).encode()), signature])
    assert app.test_client().get("/admin/keys", headers=auth(forged)).status_code == 401


# --- API keys -------------------------------------------------------------------------------------


def test_api_key_is_shown_once_and_stored_hashed(app):
    client = app.test_client()
    created = client.post("/admin/keys", json={"owner": "ci-bot", "role": "user", "name": "ci"},
                          headers=bearer(app, "ops", "admin"))
    assert created.status_code == 201
    key = created.json["key"]
    assert key.startswith("ap-")
    listed = client.get("/admin/keys", headers=bearer(app, "ops", "admin")).json["data"]
    assert all("key" not in row and "key_hash" not in row for row in listed)
    engine = portal_of(app).database()
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT key_hash FROM portal_api_keys")).scalar()
    assert stored == hashlib.sha256(key.encode()).hexdigest() and key not in stored
    assert client.get("/v1/models", headers=auth(key)).status_code == 200


def test_revoked_api_key_is_refused(app):
    store = store_of(portal_of(app))
    created = store.create("bot", "user")
    assert get_models(app, auth(created["key"])).status_code == 200
    response = app.test_client().delete(f"/admin/keys/{created['id']}", headers=bearer(app, "ops", "admin"))
    assert response.status_code == 200
    assert get_models(app, auth(created["key"])).status_code == 401


def test_expired_api_key_is_refused(app):
    from datetime import timedelta

    created = store_of(portal_of(app)).create("bot", "user", expires_in=timedelta(seconds=1))
    assert get_models(app, auth(created["key"])).status_code == 200
    time.sleep(1.1)
    assert get_models(app, auth(created["key"])).status_code == 401


def test_wrong_api_keys_fail_the_same_way_whatever_prefix_they_share(app):
    real = store_of(portal_of(app)).create("bot", "user")["key"]
    near = real[:-1] + ("0" if real[-1] != "0" else "1")
    far = "ap-" + "f" * (len(real) - 3)
    answers = [get_models(app, auth(k)) for k in (near, far)]
    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].json["error"]["message"] == answers[1].json["error"]["message"]


def test_api_key_admin_api_validates_its_input(app):
    client = app.test_client()
    admin = bearer(app, "ops", "admin")
    assert client.post("/admin/keys", json={"owner": 5}, headers=admin).status_code == 400
    assert client.post("/admin/keys", json={"owner": "x", "role": "god"}, headers=admin).status_code == 400
    assert client.post("/admin/keys", json={"owner": "x", "expires_in": "soon"}, headers=admin).status_code == 400
    assert client.delete("/admin/keys/nope", headers=admin).status_code == 404


# --- the route audit ----------------------------------------------------------------------------


def test_route_audit_every_non_public_route_refuses_lower_callers(make_app, fake_upstream, webui):
    sections = every_builtin_plugin(fake_upstream, webui)
    assert set(discover_builtins()) <= set(sections), "the audit must enable every built-in plugin"
    app = make_app(**sections)
    portal = portal_of(app)
    assert set(portal.sources) >= set(discover_builtins())
    client = app.test_client()
    user, pending = bearer(app, "bob", "user"), signed_header(role="pending", sub="newbie")
    checked = 0
    for rule in app.url_map.iter_rules():
        access = portal.access_by_endpoint[rule.endpoint]
        if access == "public":
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", "x").replace(f"<path:{arg}>", "x")
        path = path.replace("<path:x>", "x")
        extra = {"Upgrade": "websocket", "Connection": "Upgrade"} if rule.websocket else {}
        view = app.view_functions[rule.endpoint]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if not getattr(view, "auth_in_first_message", False):
                anonymous = client.open(path, method=method, headers=extra)
                assert anonymous.status_code == 401, (method, path)
                assert "WWW-Authenticate" in anonymous.headers
            lower = pending if access == "user" else user
            refused = client.open(path, method=method, headers={**extra, **lower})
            assert refused.status_code == 403, (method, path, refused.status_code)
            checked += 1
    assert checked >= 10
