"""The ``token`` cookie alone never authorises a request another site could have sent."""
from __future__ import annotations

import json

import pytest
from ws_client import WebSocketClient

from conftest import WEBUI_SECRET, chat_plugins
from fake_admin_uis import FakeKongAdmin

HELLO = [{"role": "user", "content": "hi"}]
CHAT = json.dumps({"model": "echo", "messages": HELLO})


@pytest.fixture
def app(make_app, webui, fake_upstream):
    return make_app(openwebui_session={"url": webui.url, "secret": WEBUI_SECRET},
                    **chat_plugins(fake_upstream))


def cookie_client(app, token):
    client = app.test_client()
    client.set_cookie("token", token)
    return client


def post_chat(client, headers, data=CHAT, content_type="application/json"):
    return client.post("/v1/chat/completions", data=data, headers={"Content-Type": content_type, **headers})


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"},
                                     {"Referer": "https://evil.example/page"}, {}])
def test_a_cookie_post_from_another_site_or_of_unknown_origin_is_refused(app, webui, fake_upstream, headers):
    before = len(fake_upstream.requests)
    response = post_chat(cookie_client(app, webui.login("alice")), headers)
    assert response.status_code == 403 and response.json["error"]["code"] == "cross_site_request"
    assert len(fake_upstream.requests) == before


def test_a_cookie_post_from_the_portals_own_site_is_served(app, webui):
    client = cookie_client(app, webui.login("alice"))
    assert post_chat(client, {"Origin": "http://localhost"}).status_code == 200
    assert post_chat(client, {"Origin": "http://localhost:80"}).status_code == 200  # the default port


def test_the_cookie_check_compares_the_scheme_too(app, webui):
    client = cookie_client(app, webui.login("alice"))
    for origin in ("https://localhost", "ws://localhost", "http://localhost:8080"):
        response = post_chat(client, {"Origin": origin})
        assert response.status_code == 403 and response.json["error"]["code"] == "cross_site_request", origin


def proxied_app(make_app, webui, fake_upstream, tmp_path, proxies):
    from conftest import base_config

    config = base_config(tmp_path, openwebui_session={"url": webui.url, "secret": WEBUI_SECRET},
                         **chat_plugins(fake_upstream))
    config["portal"]["trusted_proxies"] = proxies
    return make_app(config=config)


def test_forwarded_headers_count_only_from_a_trusted_proxy(make_app, webui, fake_upstream, tmp_path):
    behind_kong = {"Origin": "https://ai.example.com", "X-Forwarded-Host": "ai.example.com",
                   "X-Forwarded-Proto": "https"}
    trusting = proxied_app(make_app, webui, fake_upstream, tmp_path, ["127.0.0.0/8"])
    client = cookie_client(trusting, webui.login("alice"))
    assert post_chat(client, behind_kong).status_code == 200
    assert post_chat(client, {**behind_kong, "X-Forwarded-Proto": "http"}).status_code == 403  # scheme differs
    from_elsewhere = client.post("/v1/chat/completions", data=CHAT, environ_base={"REMOTE_ADDR": "203.0.113.9"},
                                 headers={"Content-Type": "application/json", **behind_kong})
    assert from_elsewhere.status_code == 403  # a peer that is not the proxy
    untrusting = cookie_client(make_app(openwebui_session={"url": webui.url, "secret": WEBUI_SECRET},
                                        **chat_plugins(fake_upstream)), webui.login("alice"))
    forged = post_chat(untrusting, {"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example",
                                    "X-Forwarded-Proto": "https"})
    assert forged.status_code == 403  # no trusted proxy: the request's own forwarded headers count for nothing


def test_a_cookie_post_that_is_not_json_is_refused_even_from_the_own_site(app, webui, fake_upstream):
    before = len(fake_upstream.requests)
    response = post_chat(cookie_client(app, webui.login("alice")), {"Origin": "http://localhost"},
                         content_type="text/plain")
    assert response.status_code == 415 and len(fake_upstream.requests) == before


def test_cors_origins_may_post_with_the_cookie(make_app, webui, fake_upstream, tmp_path):
    from conftest import base_config

    config = base_config(tmp_path, openwebui_session={"url": webui.url, "secret": WEBUI_SECRET},
                         **chat_plugins(fake_upstream))
    config["portal"]["cors_origins"] = ["http://webui.example:3000"]
    app = make_app(config=config)
    client = cookie_client(app, webui.login("alice"))
    assert post_chat(client, {"Origin": "http://webui.example:3000"}).status_code == 200


def test_bearer_callers_are_not_affected_by_origin(app, webui):
    response = post_chat(app.test_client(), {"Authorization": f"Bearer {webui.login('alice')}",
                                             "Origin": "https://evil.example"}, content_type="text/plain")
    assert response.status_code == 200


def test_a_form_post_to_the_kong_admin_api_with_the_cookie_is_refused(make_app, webui, tmp_path):
    kong = FakeKongAdmin()
    try:
        app = make_app(openwebui_session={"url": webui.url, "secret": WEBUI_SECRET},
                       kong={"admin_url": kong.url, "allow_writes": [{"methods": ["POST"], "paths": ["/services"]}]})
        client = cookie_client(app, webui.login("root"))
        response = client.post("/kong-admin/services", data="name=evil&url=http://evil",
                               headers={"Origin": "https://evil.example",
                                        "Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 403
        assert kong.writes == []
    finally:
        kong.stop()


def test_a_websocket_upgrade_with_the_cookie_from_another_site_is_refused(app, webui, live_server):
    server = live_server(app)
    headers = {"Cookie": f"token={webui.login('alice')}", "Origin": "https://evil.example"}
    with pytest.raises(Exception):
        ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/chat", headers=headers)
        ws.send(CHAT)
        ws.receive(timeout=3)
    # this client sends "Host: 127.0.0.1" without the port; a browser's Origin matches its Host
    own = {"Cookie": f"token={webui.login('alice')}", "Origin": "http://127.0.0.1"}
    ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/ws/chat", headers=own)
    ws.send(CHAT)
    assert json.loads(ws.receive(timeout=5))["type"] == "chunk"
    ws.close()
