"""The portal's own API described: /openapi.json from the route table, /docs rendering it."""
from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate

from agent_portal import portal_of
from agent_portal.openapi import openapi_path

from conftest import bearer
from helpers import every_builtin_plugin


@pytest.fixture
def everything(make_app, fake_upstream, webui):
    return make_app(**every_builtin_plugin(fake_upstream, webui))


def operations(document: dict) -> set:
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item}


def test_the_document_is_valid_openapi_3_1_and_lists_exactly_the_routes(everything):
    document = everything.test_client().get("/openapi.json", headers=bearer(everything, "root", "admin")).json
    assert document["openapi"] == "3.1.0"
    validate(document)
    routes = {(openapi_path(r["path"])[0], m) for r in portal_of(everything).routes for m in r["methods"]
              if m not in ("HEAD", "OPTIONS")}
    assert operations(document) == routes
    assert len(routes) > 80


def test_the_document_shows_each_caller_only_the_routes_they_may_call(everything):
    client, routes = everything.test_client(), portal_of(everything).routes
    access_of = {(openapi_path(r["path"])[0], m): r["access"] for r in routes for m in r["methods"]
                 if m not in ("HEAD", "OPTIONS")}
    for headers, allowed in (({}, {"public"}), (bearer(everything, "alice"), {"public", "user"}),
                             (bearer(everything, "root", "admin"), {"public", "user", "admin"})):
        document = client.get("/openapi.json", headers=headers).json
        validate(document)
        assert operations(document) == {op for op, access in access_of.items() if access in allowed}
    assert "/admin/keys" not in client.get("/openapi.json", headers=bearer(everything, "alice")).json["paths"]
    forged = client.get("/openapi.json", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 200 and "/admin/keys" not in forged.json["paths"]


def test_the_docs_page_carries_the_dashboards_security_headers(everything):
    client = everything.test_client()
    for path in ("/docs", "/docs/assets/docs-init.js", "/docs/assets/swagger-ui-bundle.js"):
        headers = client.get(path).headers
        assert "frame-ancestors 'self'" in headers["Content-Security-Policy"], path
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "SAMEORIGIN"


def test_each_operation_says_who_may_call_it_and_how_it_refuses(everything):
    document = everything.test_client().get("/openapi.json", headers=bearer(everything, "root", "admin")).json
    keys = document["paths"]["/admin/keys"]["get"]
    assert keys["x-access"] == "admin" and keys["security"] == [{"bearer": []}, {"apiKey": []}]
    assert keys["responses"]["403"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    health = document["paths"]["/health"]["get"]
    assert health["security"] == [] and "401" not in health["responses"]
    thread = document["paths"]["/agents/threads/{thread_id}"]["get"]
    assert thread["parameters"] == [{"name": "thread_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    usage = document["paths"]["/observability/usage"]["get"]
    assert {p["name"] for p in usage["parameters"] if p["in"] == "query"} == {
        "from", "to", "group_by", "user", "model", "backend", "key", "kind", "source", "format"}


def test_a_route_s_declared_body_schema_is_documented_and_enforced(everything, fake_upstream):
    client = everything.test_client()
    chat = client.get("/openapi.json", headers=bearer(everything)).json["paths"]["/v1/chat/completions"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["model", "messages"]
    before = len(fake_upstream.requests)
    refused = client.post("/v1/chat/completions", headers=bearer(everything), json={"model": "echo", "messages": []})
    assert refused.status_code == 400 and refused.json["error"]["code"] == "missing_messages"
    assert "schema" in refused.json["error"]["message"] and len(fake_upstream.requests) == before


# Plugins whose routes pass another service's own answer on (LangGraph's, Open Notebook's, Kong's,
# an embedded UI's): those services describe them, the portal does not repeat it.
PASS_THROUGH = {"langgraph", "open_notebook", "kong"}
PASS_THROUGH_PATHS = ("/embed/",)


def test_every_answer_the_portal_makes_itself_has_a_declared_schema(everything):
    document = everything.test_client().get("/openapi.json", headers=bearer(everything, "root", "admin")).json
    undescribed = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation["tags"][0] in PASS_THROUGH or path.startswith(PASS_THROUGH_PATHS) \
                    or operation.get("x-websocket"):
                continue
            successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
            if not any("content" in r for r in successes.values()):
                undescribed.append(f"{method.upper()} {path}")
    assert undescribed == []


def test_a_body_schema_beyond_draft_7_is_still_enforced(make_app):
    """fastjsonschema knows draft 7; a schema with newer keywords is checked by jsonschema alone."""
    from agent_portal import PortalError
    from agent_portal.routing import body_check

    check = body_check({"type": "array", "prefixItems": [{"type": "string"}], "x-error-code": "bad_pair"})
    check(["a", 1])
    with pytest.raises(PortalError) as refused:
        check([1, "a"])
    assert refused.value.code == "bad_pair"


def test_the_cli_prints_the_same_document_without_a_server(capsys, tmp_path):
    from agent_portal.cli import main

    path = tmp_path / "portal.yaml"
    path.write_text("portal:\n  secret_key: openapi-cli-secret-0123456789abcdef\n"
                    f"  database_url: sqlite:///{tmp_path}/o.db\nplugins:\n  chat: {{}}\n  portal_tokens: {{}}\n")
    assert main(["openapi", "--config", str(path)]) == 0
    document = json.loads(capsys.readouterr().out)
    validate(document)
    assert "/v1/chat/completions" in document["paths"]


def test_docs_can_be_admin_only_or_off(make_app, tmp_path):
    admin_only = make_app(config={"portal": {"secret_key": "docs-secret-5b0e19c7d3a8f246e1c4a97d", "docs": "admin",
                                             "database_url": f"sqlite:///{tmp_path}/d.db"},
                                  "plugins": {"portal_tokens": {}}})
    client = admin_only.test_client()
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs", headers=bearer(admin_only, "alice")).status_code == 403
    assert client.get("/docs", headers=bearer(admin_only, "root", "admin")).status_code == 200
    off = make_app(config={"portal": {"secret_key": "docs-secret-5b0e19c7d3a8f246e1c4a97d", "docs": "off",
                                      "database_url": f"sqlite:///{tmp_path}/e.db"}, "plugins": {}})
    assert off.test_client().get("/openapi.json").status_code == 404


def test_the_docs_page_renders_every_operation_in_chromium(everything, live_server, browser):
    server = live_server(everything)
    page = browser.new_page()
    try:
        page.goto(f"{server.url}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        shown = page.locator(".opblock").count()  # an anonymous visitor: the public routes
        assert shown == len(operations(everything.test_client().get("/openapi.json").json))
        assert "Agent Portal" in page.locator(".title").first.inner_text()
    finally:
        page.close()
