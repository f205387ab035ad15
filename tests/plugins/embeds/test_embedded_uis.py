"""Embedded admin UIs that render: every script, stylesheet and font a framed page names answers
200 through the portal, resolved as a browser resolves it; a UI that cannot live under its
``/embed/<name>/`` prefix is ``degraded`` in health, with the reason. Against the real LiteLLM
proxy (its UI under ``SERVER_ROOT_PATH``) and Next.js-shaped stand-ins for Langfuse and Helicone."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from agent_portal.page_assets import outside_prefix, page_assets, stylesheet_assets

from conftest import bearer
from fixtures_services import LITELLM_EMBED_PATH
from fake_admin_uis import FakeNextApp

ORIGIN = "http://localhost"


def embed_app(make_app, **uis):
    return make_app(embeds={"uis": uis}, observability={"health_cache_seconds": 0})


def admin(app):
    return bearer(app, "root", "admin")


def load_framed_page(app, path):
    """Fetch ``path`` and everything it names (and its stylesheets name) through the portal as a
    browser would; return ``(asset URLs, {url: status})``."""
    client = app.test_client()
    page = client.get(path, headers=admin(app), follow_redirects=True)
    assert page.status_code == 200 and "html" in page.content_type, (page.status_code, page.data[:200])
    page_url = ORIGIN + (page.request.path if page.request else path)
    assets = page_assets(page.get_data(as_text=True), page_url)
    statuses = {}
    for url in list(assets):
        answer = client.get(urlsplit(url).path, headers=admin(app))
        statuses[url] = answer.status_code
        if "css" in (answer.content_type or ""):
            for inner in stylesheet_assets(answer.get_data(as_text=True), url):
                if inner not in assets:
                    assets.append(inner)
                statuses[inner] = client.get(urlsplit(inner).path, headers=admin(app)).status_code
    return assets, statuses


def embed_health(app, name):
    health = app.test_client().get("/observability/health", headers=admin(app)).json
    return health["components"][f"embed:{name}"]


@pytest.mark.integration
def test_litellm_ui_under_its_root_path_loads_every_asset_through_the_portal(make_app, litellm):
    app = embed_app(make_app, litellm={"url": litellm["url"] + LITELLM_EMBED_PATH, "page": "ui/", "title": "LiteLLM"})
    listed = app.test_client().get("/embeds", headers=admin(app)).json["data"]
    assert listed == [{"name": "litellm", "title": "LiteLLM", "path": "/embed/litellm/ui/"}]
    assets, statuses = load_framed_page(app, "/embed/litellm/ui/")
    kinds = {urlsplit(a).path.rsplit(".", 1)[-1] for a in assets}
    assert {"js", "css", "woff2"} <= kinds, kinds  # scripts, stylesheets and fonts, not an empty page
    assert outside_prefix(assets, ORIGIN, "/embed/litellm") == []
    assert {url: code for url, code in statuses.items() if code != 200} == {}
    state = embed_health(app, "litellm")
    assert state["status"] == "up" and state["assets"] >= 10, state


@pytest.mark.integration
def test_a_ui_served_under_another_prefix_is_degraded_with_the_reason(make_app, litellm):
    # LiteLLM serves its UI under /embed/litellm; framed as "llm" its assets would miss
    app = embed_app(make_app, llm={"url": litellm["url"] + LITELLM_EMBED_PATH, "page": "ui/"})
    state = embed_health(app, "llm")
    assert state["status"] == "degraded", state
    assert "/embed/litellm/_next/" in state["detail"] and "outside /embed/llm/" in state["detail"]


def test_a_next_app_built_with_the_embed_base_path_loads_completely(make_app):
    langfuse = FakeNextApp(base_path="/embed/langfuse")  # NEXT_PUBLIC_BASE_PATH at build time
    try:
        app = embed_app(make_app, langfuse={"url": langfuse.url + "/embed/langfuse"})
        assets, statuses = load_framed_page(app, "/embed/langfuse/")
        assert len(assets) == 3 and all(code == 200 for code in statuses.values()), statuses
        state = embed_health(app, "langfuse")
        assert state["status"] == "up" and state["assets"] == 3, state
    finally:
        langfuse.stop()


def test_a_root_only_next_app_is_degraded_and_says_why(make_app):
    helicone = FakeNextApp(base_path="")  # a prebuilt image: its assets at the site's root
    try:
        app = embed_app(make_app, helicone={"url": helicone.url, "title": "Helicone"})
        page = app.test_client().get("/embed/helicone/", headers=admin(app), follow_redirects=True)
        assert page.status_code == 200  # the HTML answers: what a check of the page alone would call fine
        names = page_assets(page.get_data(as_text=True), ORIGIN + "/embed/helicone/auth/sign-in")
        assert outside_prefix(names, ORIGIN, "/embed/helicone") == [
            "/_next/static/media/inter.woff2", "/_next/static/css/app.css", "/_next/static/chunks/main.js"]
        state = embed_health(app, "helicone")
        assert state["status"] == "degraded" and state["outside"] == 3, state
        assert "/_next/static/media/inter.woff2" in state["detail"] and "base-path" in state["detail"]
    finally:
        helicone.stop()


def test_an_embed_url_without_the_base_path_the_ui_serves_is_found_out(make_app):
    langfuse = FakeNextApp(base_path="/embed/langfuse")
    try:
        # the base path built in, but the embed pointing at the server's root: the page is not there
        app = embed_app(make_app, langfuse={"url": langfuse.url})
        assert embed_health(app, "langfuse")["status"] == "down"
        # the page found through an explicit page, but its assets then miss through the proxy
        app = embed_app(make_app, langfuse={"url": langfuse.url, "page": "embed/langfuse/auth/sign-in"})
        state = embed_health(app, "langfuse")
        assert state["status"] == "degraded" and "HTTP 404" in state["detail"], state
    finally:
        langfuse.stop()


def test_page_assets_reads_tag_soup_base_href_and_skips_inline_and_data_urls():
    html = ('<html><head><base href="/embed/x/app/"><LINK REL="Stylesheet" HREF="css/a.css">'
            '<link rel="preload" as="font" href="/embed/x/f.woff2"><link rel="canonical" href="/elsewhere">'
            '<script>inline()</script><script src="js/m.js"></script><p>unclosed<script src="https://cdn.example/x.js"></script>'
            '<link rel="icon" href="data:image/png;base64,AAAA"><script src="js/m.js"></script>')
    found = page_assets(html, "http://localhost/embed/x/")
    assert found == ["http://localhost/embed/x/app/css/a.css", "http://localhost/embed/x/f.woff2",
                     "http://localhost/embed/x/app/js/m.js", "https://cdn.example/x.js"]
    assert outside_prefix(found, "http://localhost", "/embed/x") == []
    assert stylesheet_assets("a{src:url('../m/f.woff2')} b{background:url(data:x)} c{x:url( /i.png )}",
                             "http://localhost/embed/x/css/a.css") == [
        "http://localhost/embed/x/m/f.woff2", "http://localhost/i.png"]


def test_a_root_only_ui_on_a_host_of_its_own_is_framed_there_and_never_proxied(make_app):
    helicone = FakeNextApp(base_path="")
    try:
        # its public_url is where browsers reach it (Kong routes a host to it); here the same server
        app = make_app(embeds={"uis": {"helicone": {"url": helicone.url, "public_url": helicone.url}}},
                       observability={"health_cache_seconds": 0}, dashboard={})
        client = app.test_client()
        assert client.get("/embeds", headers=admin(app)).json["data"][0]["path"] == helicone.url + "/"
        assert client.get("/embed/helicone/", headers=admin(app)).status_code == 404  # not through the portal
        state = embed_health(app, "helicone")
        assert state["status"] == "up" and state["assets"] == 3, state
        policy = client.get("/dashboard").headers["Content-Security-Policy"]
        assert f"frame-src 'self' {helicone.url};" in policy  # the console may frame it, and nothing else
    finally:
        helicone.stop()
