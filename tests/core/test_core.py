"""The core: factory, plugins, isolation, routes, errors, request ids, logs (config: test_config.py)."""
from __future__ import annotations

import json
import logging
import sys
import time

import pytest

from agent_portal import HealthCheck, Route, StartupError, create_app, hookimpl, portal_of
from agent_portal.isolation import run_isolated
from agent_portal.observe import run_health

from conftest import base_config, bearer, chat_plugins


def test_factory_builds_independent_apps(make_app):
    first, second = make_app(), make_app()
    assert portal_of(first) is not portal_of(second)
    assert portal_of(first).pm is not portal_of(second).pm
    assert first.test_client().get("/health").json == {"status": "ok"}


def test_ready_answers_once_startup_completed(make_app):
    response = make_app().test_client().get("/ready")
    assert response.status_code == 200
    assert response.json["status"] == "ready"
    assert "portal_tokens" in response.json["plugins"]


def test_builtin_plugin_is_registered_only_when_enabled(make_app):
    app = make_app(ledger={"enabled": False}, metrics={})
    sources = portal_of(app).sources
    assert "metrics" in sources and "ledger" not in sources and "chat" not in sources


def test_blocked_plugin_is_not_registered(tmp_path):
    config = base_config(tmp_path, metrics={})
    config["portal"]["blocked_plugins"] = ["metrics"]
    app = create_app(config)
    assert "metrics" not in portal_of(app).sources
    assert app.test_client().get("/metrics").status_code == 404


# --- entry points: a small third-party distribution on sys.path ------------------------------

THIRD_PARTY = '''
from agent_portal import Route, hookimpl

@hookimpl
def portal_register_routes(portal):
    def hello():
        return {"hello": portal.plugin_config("hello_plugin").get("greeting", "world")}
    return [Route("/hello", hello, access="public")]

@hookimpl
def portal_config_schema():
    return {"hello_plugin": {"type": "object", "properties": {"greeting": {"type": "string"}},
                             "additionalProperties": False}}
'''


@pytest.fixture
def third_party_dist(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello_portal_plugin.py").write_text(THIRD_PARTY)
    dist = site / "hello_portal_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-portal-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[agent_portal]\nhello_plugin = hello_portal_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("hello_portal_plugin", None)


def test_entry_point_plugin_is_discovered_and_configured(third_party_dist, tmp_path):
    app = create_app(base_config(tmp_path, hello_plugin={"greeting": "portal"}))
    assert portal_of(app).sources["hello_plugin"].startswith("entry point")
    assert app.test_client().get("/hello").json == {"hello": "portal"}


def test_entry_point_plugin_can_be_blocked(third_party_dist, tmp_path):
    config = base_config(tmp_path)
    config["portal"]["blocked_plugins"] = ["hello_plugin"]
    app = create_app(config)
    assert "hello_plugin" not in portal_of(app).sources
    assert app.test_client().get("/hello").status_code == 404


def test_entry_point_plugin_bad_setting_is_named(third_party_dist, tmp_path):
    with pytest.raises(StartupError, match=r"plugins\.hello_plugin\.greeting"):
        create_app(base_config(tmp_path, hello_plugin={"greeting": 5}))


# --- isolation ---------------------------------------------------------------------------------


class FlakyChecks:
    @hookimpl
    def portal_health_checks(self, portal):
        def boom(portal):
            raise RuntimeError("disk on fire")

        def hang(portal):
            time.sleep(5)
            return {"status": "up"}

        def fine(portal):
            return {"status": "up", "detail": "ok"}

        return [HealthCheck("boom", boom, timeout=1, required=True),
                HealthCheck("hang", hang, timeout=0.3), HealthCheck("fine", fine, timeout=1)]


def test_failing_and_hanging_health_checks_are_isolated(make_app):
    app = make_app()
    portal = portal_of(app)
    portal.pm.register(FlakyChecks(), name="flaky")
    started = time.monotonic()
    health = run_health(portal)
    assert time.monotonic() - started < 1.5
    components = health["components"]
    assert components["fine"]["status"] == "up"
    assert components["boom"]["status"] == "down" and "disk on fire" in components["boom"]["detail"]
    assert components["hang"]["status"] == "down" and "timed out" in components["hang"]["detail"]
    assert health["status"] == "down"  # boom is required


def test_run_isolated_keeps_each_result_apart():
    results = run_isolated([("ok", lambda: 42, 1), ("bad", lambda: 1 / 0, 1)])
    assert results["ok"]["value"] == 42 and results["ok"]["ok"]
    assert not results["bad"]["ok"] and "ZeroDivisionError" in results["bad"]["error"]


# --- routes ----------------------------------------------------------------------------------------


class DuplicateRoute:
    @hookimpl
    def portal_register_routes(self, portal):
        return [Route("/health", lambda: "x", access="public", name="mine")]


class NoAccessRoute:
    @hookimpl
    def portal_register_routes(self, portal):
        return [Route("/open", lambda: "x")]


@pytest.fixture
def app_with_plugin(tmp_path):
    """Build an app with an extra plugin object registered (as its ``name``, ``intruder``)."""

    def build(plugin):
        plugin.name = "intruder"
        return create_app(base_config(tmp_path), plugins=[plugin])

    return build


def test_two_plugins_claiming_one_path_stop_startup(app_with_plugin):
    with pytest.raises(StartupError, match=r"GET /health is already claimed by plugin 'core'"):
        app_with_plugin(DuplicateRoute())


def test_route_without_access_stops_startup(app_with_plugin):
    with pytest.raises(StartupError, match=r"route /open declares access None"):
        app_with_plugin(NoAccessRoute())


def test_misspelt_hook_stops_startup(tmp_path):
    class Misspelt:
        name = "misspelt"

        @hookimpl
        def portal_helth_checks(self, portal):
            return []

    with pytest.raises(StartupError, match="misspelt"):
        create_app(base_config(tmp_path), plugins=[Misspelt()])


# --- errors, request ids, logs --------------------------------------------------------------------


def _assert_error_shape(response, status):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = response.json["error"]
    assert set(error) == {"message", "type", "code", "request_id"}
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


def test_not_found_has_the_json_error_shape(make_app):
    _assert_error_shape(make_app().test_client().get("/nowhere"), 404)


def test_method_not_allowed_has_the_json_error_shape(make_app):
    response = make_app().test_client().delete("/health")
    _assert_error_shape(response, 405)
    assert "GET" in response.headers["Allow"]


def test_body_over_the_limit_is_413_json(make_app, fake_upstream, tmp_path):
    config = base_config(tmp_path, **chat_plugins(fake_upstream))
    config["portal"]["max_body_bytes"] = 2048
    app = make_app(config=config)
    response = app.test_client().post("/v1/chat/completions", data="x" * 5000,
                                      headers={**bearer(app), "Content-Type": "application/json"})
    _assert_error_shape(response, 413)


def _chunked_post(port: int, token: str, body: bytes) -> bytes:
    import socket

    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: {token}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    for i in range(0, len(body), 8192):
        piece = body[i:i + 8192]
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    sock.sendall(b"0\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    sock.close()
    return answer


@pytest.mark.parametrize("padding", [b" " * 100_000, b"x" * 100_000])
def test_chunked_body_over_the_limit_is_413_even_when_it_starts_as_valid_json(
        make_app, fake_upstream, live_server, tmp_path, padding):
    config = base_config(tmp_path, **chat_plugins(fake_upstream))
    config["portal"]["max_body_bytes"] = 65536
    app = make_app(config=config)
    server = live_server(app)
    before = len(fake_upstream.requests)
    valid = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).encode()
    answer = _chunked_post(server.port, bearer(app)["Authorization"], valid + padding)
    assert answer.startswith(b"HTTP/1.1 413") and len(fake_upstream.requests) == before
    small = _chunked_post(server.port, bearer(app)["Authorization"], valid)
    assert small.startswith(b"HTTP/1.1 200")


def test_malformed_json_body_is_400_json(make_app):
    app = make_app(api_keys={})
    response = app.test_client().post("/admin/keys", data="{nope",
                                      headers={**bearer(app, "root", "admin"), "Content-Type": "application/json"})
    error = _assert_error_shape(response, 400)
    assert "JSON" in error["message"]


def test_unexpected_exception_is_500_json_without_details(app_with_plugin):
    class Broken:
        @hookimpl
        def portal_register_routes(self, portal):
            def explode():
                raise RuntimeError("secret internals")
            return [Route("/explode", explode, access="public")]

    response = app_with_plugin(Broken()).test_client().get("/explode")
    error = _assert_error_shape(response, 500)
    assert "secret internals" not in error["message"]


def test_well_formed_request_id_is_kept_and_bad_one_replaced(make_app):
    client = make_app().test_client()
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    replaced = client.get("/health", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"]
    assert replaced != "bad id <script>" and len(replaced) == 32


def test_log_lines_are_json_with_the_request_id(make_app, capsys):
    app = make_app()
    logger = logging.getLogger("agent_portal.test")
    logger.setLevel(logging.INFO)

    @app.get("/log-something")
    def log_something():
        logger.warning("hello from a request")
        return "ok"

    portal_of(app).access_by_endpoint["log_something"] = "public"
    app.test_client().get("/log-something", headers={"X-Request-ID": "req-42"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("message") == "hello from a request"]
    assert mine and mine[0]["request_id"] == "req-42" and mine[0]["level"] == "WARNING"


def test_portal_secret_required_for_portal_tokens(tmp_path):
    config = base_config(tmp_path)
    config["portal"]["secret_key"] = None
    with pytest.raises(StartupError, match="plugin 'portal_tokens': portal.secret_key must be set"):
        create_app(config)


def test_cors_preflight_and_responses_only_for_configured_origins(tmp_path):
    config = base_config(tmp_path, observability={}, ledger={})
    config["portal"]["cors_origins"] = ["http://webui.local:3000"]
    app = create_app(config)
    client = app.test_client()
    preflight = client.options("/observability/usage", headers={
        "Origin": "http://webui.local:3000", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    answer = client.get("/observability/usage", headers={**bearer(app), "Origin": "http://webui.local:3000"})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "http://webui.local:3000"
    stranger = client.options("/observability/usage", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert stranger.status_code == 401 and "Access-Control-Allow-Origin" not in stranger.headers
