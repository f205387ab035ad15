"""Kong's declarative config routes what the portal serves, streams it unbuffered, and never
exposes its own Admin API (the file is never run here)."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import yaml

from conftest import ROOT

KONG_TEXT = (ROOT / "deploy/kong/kong.yml").read_text()
KONG = yaml.safe_load(KONG_TEXT)


def kong_routes():
    return {route["name"]: route for service in KONG["services"] for route in service.get("routes", [])}


def test_kong_sends_the_portal_paths_to_the_portal_service():
    portal = next(s for s in KONG["services"] if s["name"] == "agent-portal")
    url = urlsplit(portal["url"])
    assert url.hostname == "portal" and url.port == 8080
    paths = [p for route in portal["routes"] for p in route["paths"]]
    for prefix in ("/v1", "/observability", "/embed", "/ws/chat", "/ws/events", "/agents", "/search", "/notebooks",
                   "/documents", "/mcp"):
        assert prefix in paths, prefix
    assert any("chat/(completions|stream)" in p for p in paths)


def test_kong_streams_without_buffering_and_passes_websockets():
    routes = kong_routes()
    for name in ("portal-openai-api", "portal-seed-chat", "portal-websockets", "portal-embeds", "portal-agents"):
        assert routes[name]["response_buffering"] is False, name
    assert routes["portal-websockets"]["request_buffering"] is False
    assert set(routes["portal-websockets"]["protocols"]) == {"http", "https"}


def test_kong_limits_request_size_and_says_why_for_each_plugin():
    plugins = [p["name"] for service in KONG["services"] for p in service.get("plugins", [])]
    assert "request-size-limiting" in plugins
    commented = re.findall(r"^\s*#[^\n]*\n\s+- name: ([a-z-]+)\n\s+config:", KONG_TEXT, flags=re.M)
    assert sorted(commented) == sorted(plugins)


def test_kong_never_routes_its_own_admin_api():
    assert "8001" not in yaml.safe_dump(KONG)
