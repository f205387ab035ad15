"""The deployment files agree with each other and with the portal (they are never run here)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from agent_portal import config as cfg
from agent_portal import config_file
from agent_portal.plugin_manager import build_plugin_manager, discover_builtins, validate_plugin_sections

from conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
KONG = yaml.safe_load((ROOT / "deploy/kong/kong.yml").read_text())
SERVICES = COMPOSE["services"]


def env_example() -> dict:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def portal_environment() -> dict:
    """The portal container's environment: .env.example, then compose's own settings on top."""
    env = env_example()
    for key, value in SERVICES["portal"]["environment"].items():
        env[key] = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], str(value))
    return env


def test_the_stack_has_every_service():
    assert {"portal", "open-webui", "litellm", "langfuse-web", "langfuse-worker", "clickhouse", "minio",
            "kong", "postgres", "redis", "helicone"} <= set(SERVICES)
    assert {name for name, service in SERVICES.items() if service.get("profiles")} >= {
        "langgraph", "perplexica", "open-notebook", "qdrant"}


def test_the_compose_file_is_valid_against_the_compose_specification(tmp_path):
    """check-jsonschema's vendored copy of the Compose Specification's JSON schema (what
    `docker compose config` validates against); a broken copy of the file must fail it."""
    import shutil
    import subprocess
    import sys

    binary = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert binary, "check-jsonschema is not installed (pip install -e '.[test]')"
    check = [binary, "--builtin-schema", "vendor.compose-spec"]
    valid = subprocess.run([*check, str(ROOT / "docker-compose.yml")], capture_output=True, text=True)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    broken = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    broken["services"]["helicone"]["restart"] = ["always"]
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert subprocess.run([*check, str(tmp_path / "broken.yml")], capture_output=True).returncode == 1


def test_only_kong_publishes_a_port():
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"kong"}
    assert all(not p.startswith(("8001", "8002")) for p in SERVICES["kong"]["ports"])


def test_kong_manager_is_served_under_the_portal_embed_and_calls_the_admin_api_through_the_portal():
    kong = SERVICES["kong"]["environment"]
    assert kong["KONG_ADMIN_GUI_LISTEN"].endswith(":8002") and kong["KONG_ADMIN_GUI_PATH"] == "/embed/kong-admin"
    assert kong["KONG_ADMIN_GUI_API_URL"] == "${PORTAL_PUBLIC_URL}/kong-admin"
    env = portal_environment()
    manager = urlsplit(env["KONG_MANAGER_URL"])
    assert (manager.hostname, manager.port, manager.path) == ("kong", 8002, kong["KONG_ADMIN_GUI_PATH"])
    portal_config = yaml.safe_load((ROOT / "deploy/portal.compose.yaml").read_text())
    assert portal_config["plugins"]["kong"]["manager_url"] == "${KONG_MANAGER_URL}"
    to_portal = [p for route in KONG["services"][0]["routes"] for p in route["paths"]]
    assert "/kong-admin" in to_portal and "/embed" in to_portal
    assert "8002" not in yaml.safe_dump(KONG)


def test_helicone_is_the_portal_s_gateway_usage_source_and_an_embedded_ui():
    env = portal_environment()
    helicone = yaml.safe_load((ROOT / "deploy/portal.compose.yaml").read_text())["plugins"]["helicone"]
    api = urlsplit(env["HELICONE_API_URL"])
    assert (api.hostname, api.port) == ("helicone", 8585) and "8585" in SERVICES["helicone"]["expose"]
    assert helicone["api_url"] == "${HELICONE_API_URL}"
    assert helicone["gateway_url"] == "${HELICONE_API_URL}/v1/gateway/oai/v1"
    web = urlsplit(env["HELICONE_WEB_URL"])
    assert (web.hostname, web.port) == ("helicone", 3000) and "3000" in SERVICES["helicone"]["expose"]
    embeds = yaml.safe_load((ROOT / "deploy/portal.compose.yaml").read_text())["plugins"]["embeds"]["uis"]
    assert embeds["helicone"]["url"] == "${HELICONE_WEB_URL}"
    assert SERVICES["helicone"]["environment"]["NEXT_PUBLIC_IS_ON_PREM"] == "true"
    assert all(volume.split(":")[0] in COMPOSE["volumes"] for volume in SERVICES["helicone"]["volumes"])


def test_every_embedded_ui_is_served_under_its_own_embed_path_by_its_service():
    env = portal_environment()
    embeds = yaml.safe_load((ROOT / "deploy/portal.compose.yaml").read_text())["plugins"]["embeds"]["uis"]
    # LiteLLM: SERVER_ROOT_PATH, and the embed's url reaching the UI there
    root_path = SERVICES["litellm"]["environment"]["SERVER_ROOT_PATH"]
    assert root_path == "/embed/litellm" and embeds["litellm"]["url"] == "${LITELLM_URL}" + root_path
    assert embeds["litellm"]["page"] == "ui/"
    # Langfuse: built from its source at a pinned release with the base path inlined
    web = SERVICES["langfuse-web"]
    base_path = web["build"]["args"]["NEXT_PUBLIC_BASE_PATH"]
    assert base_path == "/embed/langfuse" == urlsplit(env["LANGFUSE_URL"]).path
    assert web["build"]["context"] == "https://github.com/langfuse/langfuse.git#${LANGFUSE_VERSION}"
    assert web["build"]["dockerfile"] == "web/Dockerfile" and "${LANGFUSE_VERSION}" in web["image"]
    assert web["environment"]["NEXTAUTH_URL"] == "${PORTAL_PUBLIC_URL}" + base_path + "/api/auth"
    assert embeds["langfuse"]["url"] == "${LANGFUSE_URL}"
    assert SERVICES["langfuse-worker"]["image"].endswith(":${LANGFUSE_WORKER_VERSION}")
    # Helicone: no base-path setting, so a host of its own that Kong routes to its web app
    assert embeds["helicone"]["public_url"] == "${HELICONE_PUBLIC_URL}"
    helicone = SERVICES["helicone"]["environment"]
    assert helicone["SITE_URL"] == helicone["NEXT_PUBLIC_APP_URL"] == "${HELICONE_PUBLIC_URL}"
    routes = {route["name"]: route for service in KONG["services"] for route in service.get("routes", [])}
    for route, variable, port in (("helicone-web-host", "HELICONE_PUBLIC_URL", 3000),
                                  ("helicone-api-host", "HELICONE_PUBLIC_API_URL", 8585)):
        service = next(s for s in KONG["services"] if routes[route] in s["routes"])
        target = urlsplit(service["url"])
        assert (target.hostname, target.port) == ("helicone", port)
        assert routes[route]["hosts"] == [urlsplit(env_example()[variable]).hostname]


def test_every_variable_compose_uses_is_in_env_example():
    used = set(re.findall(r"\$\{(\w+)\}", (ROOT / "docker-compose.yml").read_text()))
    assert used <= set(env_example()), used - set(env_example())


def test_secrets_live_only_in_env_which_git_ignores():
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()
    assert len(env_example()["WEBUI_SECRET_KEY"]) != 44  # crashes Open WebUI 0.12.4 (CONTRACTS.md)
    assert env_example()["LITELLM_MASTER_KEY"] != "sk-1234"
    text = (ROOT / "docker-compose.yml").read_text()
    for key in ("PASSWORD", "SECRET", "MASTER_KEY"):
        for line in text.splitlines():
            if key in line and ":" in line and "${" not in line and "#" not in line:
                name, _, value = line.partition(":")
                assert not value.strip() or value.strip().startswith(("$", "*", "&")), line


def test_portal_urls_name_services_and_ports_that_exist():
    env = portal_environment()
    expected = {"LITELLM_URL": ("litellm", 4000), "OPENWEBUI_URL": ("open-webui", 8080),
                "LANGFUSE_URL": ("langfuse-web", 3000), "KONG_ADMIN_URL": ("kong", 8001),
                "REDIS_URL": ("redis", 6379), "PORTAL_DATABASE_URL": ("postgres", 5432),
                "HELICONE_API_URL": ("helicone", 8585),
                "LANGGRAPH_URL": ("langgraph", 2024), "PERPLEXICA_URL": ("perplexica", 3000),
                "OPEN_NOTEBOOK_URL": ("open-notebook", 5055), "QDRANT_URL": ("qdrant", 6333)}
    for key, (host, port) in expected.items():
        url = urlsplit(env[key])
        assert (url.hostname, url.port) == (host, port), key
        assert host in SERVICES
    assert "--port" in SERVICES["litellm"]["command"]
    assert SERVICES["litellm"]["command"][SERVICES["litellm"]["command"].index("--port") + 1] == "4000"
    assert SERVICES["kong"]["environment"]["KONG_ADMIN_LISTEN"].endswith(":8001")
    database = urlsplit(env["PORTAL_DATABASE_URL"]).path.lstrip("/")
    assert f"CREATE DATABASE {database};" in (ROOT / "deploy/postgres/init.sql").read_text()
    for service in ("open-webui", "langfuse-web"):
        url = SERVICES[service]["environment"]["DATABASE_URL"]
        assert f"CREATE DATABASE {urlsplit(url).path.lstrip('/')};" in (ROOT / "deploy/postgres/init.sql").read_text()


def test_open_webui_and_the_portal_share_their_secrets():
    webui = SERVICES["open-webui"]["environment"]
    portal_config = yaml.safe_load((ROOT / "deploy/portal.compose.yaml").read_text())
    assert webui["WEBUI_SECRET_KEY"] == "${WEBUI_SECRET_KEY}"
    assert portal_config["plugins"]["openwebui_session"]["secret"] == "${WEBUI_SECRET_KEY}"
    assert webui["FORWARD_USER_INFO_HEADER_JWT_SECRET"] == "${FORWARD_USER_INFO_HEADER_JWT_SECRET}"
    assert portal_config["plugins"]["openwebui_header"]["secret"] == "${FORWARD_USER_INFO_HEADER_JWT_SECRET}"
    assert urlsplit(webui["OPENAI_API_BASE_URLS"]).hostname == "portal"
    assert urlsplit(webui["OPENAI_API_BASE_URLS"]).port == int(
        SERVICES["portal"]["environment"]["PORTAL_BIND"].rsplit(":", 1)[1])


def test_compose_portal_config_is_valid_with_the_example_environment():
    raw = yaml.safe_load((ROOT / "deploy/portal.compose.yaml").read_text())
    missing: list[str] = []
    filled = config_file.fill_environment(raw, portal_environment(), missing=missing)
    assert missing == []
    assert cfg.schema_errors(filled, cfg.CORE_SCHEMA, "") == []
    merged = cfg.merge_defaults(filled)
    pm, sources = build_plugin_manager(merged, discover_builtins(), {})
    assert validate_plugin_sections(pm, merged) == []
    assert {"openwebui_session", "langfuse", "kong", "rate_limits", "ledger", "langgraph", "perplexica",
            "open_notebook", "documents", "helicone", "embeds"} <= set(sources)


def test_the_agents_profile_serves_the_port_the_portal_calls():
    service = SERVICES["langgraph"]
    assert service["profiles"] == ["agents"]
    dockerfile = (ROOT / service["build"] / "Dockerfile").read_text()
    assert '"--port", "2024"' in dockerfile and "LANGGRAPH_CLI_NO_ANALYTICS=1" in dockerfile
    assert "2024" in service["expose"]
    project = json.loads((ROOT / service["build"] / "langgraph.json").read_text())
    for target in project["graphs"].values():
        assert (ROOT / service["build"] / target.split(":")[0]).exists()


def test_the_search_and_notebooks_profiles_serve_what_the_portal_calls():
    assert SERVICES["perplexica"]["profiles"] == ["search"] and "3000" in SERVICES["perplexica"]["expose"]
    assert SERVICES["perplexica"]["image"].split(":")[1].startswith("v1.12")
    notebook = SERVICES["open-notebook"]
    assert notebook["profiles"] == SERVICES["surrealdb"]["profiles"] == ["notebooks"]
    assert "5055" in notebook["expose"] and not notebook.get("ports")
    portal_config = yaml.safe_load((ROOT / "deploy/portal.compose.yaml").read_text())
    assert notebook["environment"]["OPEN_NOTEBOOK_PASSWORD"] == "${OPEN_NOTEBOOK_PASSWORD}"
    assert portal_config["plugins"]["open_notebook"]["password"] == "${OPEN_NOTEBOOK_PASSWORD}"
    assert notebook["environment"]["SURREAL_PASSWORD"] == "${SURREAL_PASSWORD}"
    assert "${SURREAL_PASSWORD}" in SERVICES["surrealdb"]["command"]


def test_the_documents_profile_runs_the_store_the_portal_can_switch_to():
    assert SERVICES["qdrant"]["profiles"] == ["documents"] and "6333" in SERVICES["qdrant"]["expose"]
    assert SERVICES["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"] == "${QDRANT_API_KEY}"
    store = yaml.safe_load((ROOT / "deploy/portal.compose.yaml").read_text())["plugins"]["documents"]["store"]
    assert store["api_key"] == "${QDRANT_API_KEY}" and store["path"].startswith("/app/data/")
    assert env_example()["DOCUMENTS_STORE"] in ("lancedb", "qdrant")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "[documents]" in dockerfile and "torch" not in dockerfile.replace("no torch", "")  # the ONNX embedder
    worker = SERVICES["documents-worker"]
    assert worker["command"] == ["agent-portal", "worker"] and "8796" in worker["expose"]
    section = yaml.safe_load((ROOT / "deploy/portal.compose.yaml").read_text())["plugins"]["documents"]
    assert section["embedder"]["service_url"] == "http://documents-worker:8796"
    assert section["queue"]["kind"] == "redis"


def test_compose_mounts_the_files_that_exist():
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


# --- Kong ------------------------------------------------------------------------------------


# --- the image and gunicorn --------------------------------------------------------------------


def test_dockerfile_runs_as_non_root_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/ready" in text
    assert "deploy/gunicorn.conf.py" in text and "agent_portal.wsgi:app" in text


@pytest.fixture
def gunicorn_settings(monkeypatch):
    # the settings file sets PROMETHEUS_MULTIPROC_DIR for its workers; keep that out of this process
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent-for-the-test")
    namespace: dict = {}
    path = ROOT / "deploy/gunicorn.conf.py"
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


def test_gunicorn_uses_gevent_without_preload_and_lets_streams_finish(gunicorn_settings):
    assert gunicorn_settings["worker_class"] == "gevent"
    assert gunicorn_settings["preload_app"] is False
    assert gunicorn_settings["workers"] >= 1
    assert gunicorn_settings["graceful_timeout"] >= 10 and gunicorn_settings["keepalive"] >= 30
    assert gunicorn_settings["limit_request_field_size"] >= 8192 + 100  # an 8 KB token fits
    assert callable(gunicorn_settings["worker_exit"]) and callable(gunicorn_settings["child_exit"])


def test_what_users_read_points_only_at_files_in_the_repository():
    for name in ("README.md", ".env.example", "docker-compose.yml"):
        text = (ROOT / name).read_text()
        assert "CONTRACTS.md" not in text, name
        for linked in re.findall(r"\b(docs/[\w.-]+\.md)\b", text):
            assert (ROOT / linked).exists(), (name, linked)


def test_the_run_command_installs_the_documents_stack_only_for_a_config_that_turns_documents_on(tmp_path):
    from agent_portal.plugins.documents.needed import documents_on

    assert not documents_on(str(ROOT / "config/portal.example.yaml"))  # shipped: documents off
    for section, on in (("documents: {enabled: false}", False), ("documents: {}", True), ("documents:", True),
                        ("documents: {enabled: true, answer_model: x}", True), ("chat: {}", False)):
        path = tmp_path / "portal.yaml"
        path.write_text(f"plugins:\n  {section}\n")
        assert documents_on(str(path)) is on, section
    run = (ROOT / "scripts/run.sh").read_text()
    assert "agent_portal.plugins.documents.needed" in run and "setup.sh --documents" in run
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert setup.index("torch==2.13.0") > setup.index('if [ "$extras" = "test,documents,documents-torch" ]')
    extras = (ROOT / "setup.cfg").read_text().split("documents =", 1)[1].split("documents-torch =", 1)[0]
    extras = "\n".join(line for line in extras.splitlines() if not line.lstrip().startswith("#"))
    assert "onnxruntime" in extras and "torch" not in extras and "sentence-transformers" not in extras
