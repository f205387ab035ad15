"""No secret the project ships works: every placeholder is refused at startup and by check-config."""
from __future__ import annotations

import re

import pytest
import yaml

from agent_portal import StartupError, create_app
from agent_portal.cli import main
from agent_portal.weak_secrets import weakness

from conftest import ROOT


def env_example() -> dict:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


SECRET_NAMES = [n for n in env_example() if re.search(r"SECRET|TOKEN|KEY|PASSWORD|SALT", n)]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_every_secret_in_env_example_is_refused(name):
    """A value shipped there is known to everyone; an empty one is a key made after the first
    start (Helicone's), which the portal runs without."""
    value = env_example()[name]
    assert value == "" and name == "HELICONE_API_KEY" or weakness(value) is not None


def test_secret_values_in_the_readme_and_config_examples_are_refused():
    shipped = re.findall(r"(?:SECRET|TOKEN|KEY|PASSWORD)[A-Z_]*=([^\s`'\"]+)", (ROOT / "README.md").read_text())
    for path in (ROOT / "config").glob("*.yaml"):
        shipped += re.findall(r":-([^}]+)\}", path.read_text())
    for value in shipped:
        if re.search(r"secret|key|token|password", value, re.I):
            assert weakness(value) is not None, value


def _config(tmp_path, secret_key, scrape_token="a-real-scrape-token-5b1f9c"):
    return {"portal": {"secret_key": "${PORTAL_SECRET_KEY}", "database_url": f"sqlite:///{tmp_path}/s.db"},
            "plugins": {"portal_tokens": {}, "metrics": {"scrape_token": "${METRICS_SCRAPE_TOKEN}"}}}, {
        "PORTAL_SECRET_KEY": secret_key, "METRICS_SCRAPE_TOKEN": scrape_token}


def test_the_portal_refuses_to_boot_with_the_shipped_secret_key_naming_the_variable(tmp_path):
    config, environ = _config(tmp_path, env_example()["PORTAL_SECRET_KEY"],
                              env_example()["METRICS_SCRAPE_TOKEN"])
    with pytest.raises(StartupError) as refused:
        create_app(config, environ=environ)
    message = str(refused.value)
    assert "portal.secret_key (from $PORTAL_SECRET_KEY)" in message
    assert "plugins.metrics.scrape_token (from $METRICS_SCRAPE_TOKEN)" in message
    assert env_example()["PORTAL_SECRET_KEY"] not in message  # never printed


@pytest.mark.parametrize("weak", ["a" * 40, "abababababababababababababababab01", "0" * 64,
                                  "replace.with.a.long.random.secret", "replace\u2010with-a-long-random-secret",
                                  "REPLACE_WITH_A_LONG_RANDOM_SECRET", "0123456789012345678901234567890123",
                                  "passwordpasswordpasswordpassword12", "sk-1234sk-1234sk-1234sk-1234sk-1234",
                                  "qwertyuiopasdfghjklzxcvbnm123456", "zyxwvutsrqponmlkjihgfedcba987654",
                                  "Tr0ub4dor&3", "ｒｅｐｌａｃｅ－ｗｉｔｈ－ａ－ｌｏｎｇ－ｒａｎｄｏｍ－ｓｅｃｒｅｔ"])
def test_obviously_weak_signing_keys_are_refused(tmp_path, weak):
    config, environ = _config(tmp_path, weak)
    with pytest.raises(StartupError, match="portal.secret_key"):
        create_app(config, environ=environ)


@pytest.mark.parametrize("setting, weak", [
    (("plugins", "openwebui_session", "secret"), "t0p-s3cr3t-2"),
    (("plugins", "openwebui_session", "secret"), "T0P_S3CR3T"),
    (("plugins", "litellm", "api_key"), "sk-12345678"),
    (("plugins", "litellm", "api_key"), "sk-"),
    (("plugins", "open_notebook", "password"), "password1"),
    (("plugins", "open_notebook", "password"), "Passw0rd!2024"),
])
def test_weak_secrets_for_upstreams_and_other_verifiers_are_refused_too(tmp_path, setting, weak):
    import secrets

    config, environ = _config(tmp_path, secrets.token_urlsafe(32))
    section = config
    for key in setting[:-1]:
        section = section.setdefault(key, {})
    section[setting[-1]] = weak
    section.setdefault("url", "http://127.0.0.1:9")
    with pytest.raises(StartupError, match=".".join(setting[1:] if setting[0] != "plugins" else setting)):
        create_app(config, environ=environ)


def test_a_random_secret_boots(tmp_path):
    import secrets

    config, environ = _config(tmp_path, secrets.token_urlsafe(32))
    assert create_app(config, environ=environ) is not None


def test_check_config_names_the_placeholder_variable(tmp_path, capsys, monkeypatch):
    config, environ = _config(tmp_path, env_example()["PORTAL_SECRET_KEY"])
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["check-config", "--config", str(path)]) == 1
    assert "$PORTAL_SECRET_KEY" in capsys.readouterr().err
