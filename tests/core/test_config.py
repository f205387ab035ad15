"""The config: every mistake reported at once, defaults at every depth, the environment filled,
secrets never printed."""
from __future__ import annotations

import json

import pytest

from agent_portal import StartupError, create_app
from agent_portal.config import masked
from agent_portal.config_file import fill_environment

from conftest import base_config


def test_config_reports_every_error_at_once(tmp_path):
    # a core mistake, two of a plugin's, a section no plugin owns and a wrong nested setting:
    # all from one load, none hiding another
    config = base_config(tmp_path, chat={"retries": "many", "heartbeat_seconds": -1,
                                         "circuit_breaker": {"failures": 0}}, no_such_thing={})
    config["portal"]["max_body_bytes"] = "big"
    with pytest.raises(StartupError) as caught:
        create_app(config)
    listed = [line.strip()[2:].split(":")[0] for line in str(caught.value).splitlines()[1:]]
    assert sorted(listed) == ["plugins.chat.circuit_breaker.failures", "plugins.chat.heartbeat_seconds",
                              "plugins.chat.retries", "plugins.no_such_thing", "portal.max_body_bytes"]


def test_nested_settings_get_their_schema_defaults(tmp_path):
    from agent_portal.app import checked_config

    config = base_config(tmp_path, chat={"circuit_breaker": {"failures": 3}, "models": {
        "m": {"backend": "fake"}}}, embeds={"uis": {"x": {"url": "http://127.0.0.1:9"}}})
    merged = checked_config(config)[0]
    assert merged["plugins"]["chat"]["circuit_breaker"] == {"failures": 3, "cooloff_seconds": 30}
    assert merged["plugins"]["chat"]["retries"] == 2


def test_unknown_plugin_stops_startup_naming_it(tmp_path):
    with pytest.raises(StartupError, match=r"plugins\.no_such_thing: no plugin named 'no_such_thing'"):
        create_app(base_config(tmp_path, no_such_thing={}))


def test_unknown_setting_is_named_with_its_plugin(tmp_path):
    with pytest.raises(StartupError, match=r"plugins\.litellm: unknown setting\(s\) 'ulr'"):
        create_app(base_config(tmp_path, litellm={"ulr": "http://x"}))


def test_unknown_core_key_is_refused(tmp_path):
    config = base_config(tmp_path)
    config["portal"]["secret"] = "x"
    with pytest.raises(StartupError, match=r"portal: unknown setting\(s\) 'secret'"):
        create_app(config)


def test_missing_environment_variable_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("PORTAL_TEST_UNSET", raising=False)
    config = base_config(tmp_path)
    config["portal"]["secret_key"] = "${PORTAL_TEST_UNSET}"
    with pytest.raises(StartupError, match=r"portal\.secret_key: \$\{PORTAL_TEST_UNSET\} is not set"):
        create_app(config)


def test_environment_fills_placeholders_and_defaults():
    env = {"A": "alpha", "EMPTY": ""}
    value = {"x": "${A}", "y": "pre-${A}-post", "z": "${B:-fallback}", "n": "${EMPTY:-}", "list": ["${A}"]}
    assert fill_environment(value, env) == {"x": "alpha", "y": "pre-alpha-post", "z": "fallback",
                                            "n": None, "list": ["alpha"]}


def test_secret_errors_never_print_the_secret(tmp_path):
    config = base_config(tmp_path)
    config["portal"]["secret_key"] = "short-secret"
    with pytest.raises(StartupError) as caught:
        create_app(config)
    assert "short-secret" not in str(caught.value)
    assert "portal.secret_key" in str(caught.value)


def test_masking_hides_secrets_and_url_passwords():
    shown = masked({"portal": {"secret_key": "s3cr3t", "database_url": "postgresql://u:pw@db/x"},
                    "plugins": {"litellm": {"api_key": "sk-abc", "url": "http://h"},
                                "embeds": {"uis": {"x": {"headers": {"Authorization": "Basic c2VjcmV0",
                                                                     "Cookie": "sid=hidden"}}}}}})
    text = json.dumps(shown)
    assert "s3cr3t" not in text and "sk-abc" not in text and ":pw@" not in text
    assert "c2VjcmV0" not in text and "sid=hidden" not in text
    assert masked({"tokens_per_minute": 5, "scrape_token": "t0k"}) == {"tokens_per_minute": 5,
                                                                       "scrape_token": "********"}
    assert shown["plugins"]["litellm"]["url"] == "http://h"


def test_masking_hides_passwords_without_a_user_and_secret_looking_names():
    shown = json.dumps(masked({"portal": {"redis_url": "redis://:hunter2@cache:6379/0"},
                               "x": {"apikey": "k-123", "headers": {"X-Embed-Auth": "emb-456"},
                                     "input_cost_per_token": 0.5, "max_tokens": 7}}))
    assert "hunter2" not in shown and "k-123" not in shown and "emb-456" not in shown
    assert "0.5" in shown and "7" in shown
