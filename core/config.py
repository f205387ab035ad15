"""The portal's config checked: the core's schema and defaults, every plugin's section filled
and validated, secrets masked and judged. Reading the file and its ``${VAR}``s is
:mod:`agent_portal.config_file`'s job."""
from __future__ import annotations

import copy
import re
from typing import Any, Iterable

import jsonschema

from .errors import StartupError

_SECRET_WORDS = {"secret", "password", "passwd", "pass", "pwd", "token", "key", "apikey", "auth",
                 "authorization", "cookie", "credential", "credentials", "bearer", "private", "signature", "salt"}
_SECRET_SUBSTRINGS = ("secret", "password", "passwd", "apikey", "token", "credential")
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)([^@/]+)(@)")
MASK = "********"

CORE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "portal": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "secret_key": {"type": ["string", "null"], "minLength": 32},
                "database_url": {"type": "string", "minLength": 1},
                "redis_url": {"type": ["string", "null"]},
                "max_body_bytes": {"type": "integer", "minimum": 1024},
                "log_level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
                "blocked_plugins": {"type": "array", "items": {"type": "string"}},
                "trust_request_id": {"type": "boolean"},
                "cors_origins": {"type": "array", "items": {"type": "string", "pattern": "^https?://[^/]+$"}},
                "docs": {"enum": ["public", "admin", "off"]},
                # proxies (addresses or networks) whose X-Forwarded-Proto/-Host the portal believes
                "trusted_proxies": {"type": "array", "items": {"type": "string", "minLength": 1}},
                # hosts or networks a user-chosen URL may point at although they are not public
                "outbound_allow": {"type": "array", "items": {"type": "string", "minLength": 1}},
            },
        },
        "auth": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "order": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            },
        },
        "plugins": {
            "type": "object",
            "additionalProperties": {"type": ["object", "null"]},
        },
    },
}

DEFAULTS = {
    "portal": {
        "secret_key": None,
        "database_url": "sqlite:///agent-portal.db",
        "redis_url": None,
        "max_body_bytes": 4 * 1024 * 1024,
        "log_level": "INFO",
        "blocked_plugins": [],
        "trust_request_id": True,
        "cors_origins": [],
        "docs": "public",  # who may read /openapi.json and /docs
        "trusted_proxies": [],
        "outbound_allow": [],
    },
    "auth": {"order": []},  # empty: the plugins' own order (tryfirst/trylast), see hooks.implementations
    "plugins": {},
}


def strict_object(properties: dict, required: list | tuple = ()) -> dict:
    """Return the JSON schema of an object with exactly ``properties`` (unknown keys are errors),
    the shape of every plugin's config section."""
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def merge_defaults(config: dict) -> dict:
    """Return ``config`` with the core's defaults under every missing core key."""
    merged = copy.deepcopy(DEFAULTS)
    for section, values in config.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    return merged


def fill_defaults(instance: Any, schema: dict) -> Any:
    """Return ``instance`` with every ``default`` its schema gives filled in where the setting is
    missing, at every depth: an object's properties, the values of ``additionalProperties`` and
    the items of an array. Values of the wrong type are left as they are (their error is the
    schema check's to report)."""
    kind = schema.get("type")
    if isinstance(instance, dict) and (kind in (None, "object") or isinstance(kind, list) and "object" in kind):
        properties = schema.get("properties") or {}
        for key, spec in properties.items():
            if key not in instance and isinstance(spec, dict) and "default" in spec:
                instance[key] = copy.deepcopy(spec["default"])
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            spec = properties.get(key, extra)
            if isinstance(spec, dict):
                instance[key] = fill_defaults(value, spec)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [fill_defaults(item, schema["items"]) for item in instance]
    return instance


def schema_errors(instance: Any, schema: dict, prefix: str) -> list[str]:
    """Return one readable message per place ``instance`` breaks ``schema``."""
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.path)):
        path = ".".join([prefix] + [str(p) for p in error.path]) if prefix else ".".join(
            str(p) for p in error.path)
        messages.append(f"{path or '(top level)'}: {_describe(error)}")
    return messages


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown setting(s) {', '.join(map(repr, extra))}"
    if is_secret_key(str(error.path[-1]) if error.path else ""):
        return f"invalid value ({error.validator} {error.validator_value!r} not met)"
    return error.message


def is_secret_key(name: str) -> bool:
    """Return True when a config key of this name holds a secret to mask (``api_key``,
    ``apikey``, ``secret``, ``scrape_token``, an ``Authorization`` or ``X-Embed-Auth`` header...),
    not ``tokens_per_minute``."""
    lower = name.lower()
    if _COUNTS.search(lower):
        return False
    parts = re.split(r"[_\-.]", lower)
    if any(part in _SECRET_WORDS for part in parts):
        return True
    return any(word in part for part in parts for word in _SECRET_SUBSTRINGS)


_COUNTS = re.compile(r"tokens|per_token|_token_")  # counts and prices of tokens, not tokens


def masked(value: Any, key: str = "") -> Any:
    """Return a copy of ``value`` with every secret replaced by a mask, for printing."""
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if value is not None and is_secret_key(key) and not isinstance(value, bool):
        return MASK
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\1{MASK}\3", value)
    return value


def secret_errors(config: Any, origins: dict | None = None, where: str = "") -> list[str]:
    """Return one message per secret-named setting whose value is a known placeholder or weak,
    naming the setting and the environment variable it came from."""
    from .weak_secrets import weakness

    origins = origins or {}
    errors: list[str] = []
    if isinstance(config, dict):
        # {provider_id, key} names a model (Perplexica's chat_model): its key is a name, not a credential
        model_reference = "provider_id" in config
        for key, value in config.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(value, str) and value and is_secret_key(str(key)) and not (
                    model_reference and key == "key"):
                reason = weakness(value)
                if reason:
                    source = f" (from ${origins[path]})" if path in origins else ""
                    errors.append(f"{path}{source} {reason}; generate one with "
                                  "python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
            else:
                errors += secret_errors(value, origins, path)
    elif isinstance(config, list):
        for i, value in enumerate(config):
            errors += secret_errors(value, origins, f"{where}[{i}]")
    return errors


def network_errors(config: dict) -> list[str]:
    """Return one message per ``portal.trusted_proxies`` entry that is not an address or network."""
    from .outbound import is_network

    portal = config.get("portal") if isinstance(config.get("portal"), dict) else {}
    entries = portal.get("trusted_proxies") if isinstance(portal.get("trusted_proxies"), list) else []
    return [f"portal.trusted_proxies: {entry!r} is not an address or a network (10.0.0.0/8)"
            for entry in entries if not is_network(str(entry))]


def raise_if_errors(errors: Iterable[str]) -> None:
    """Raise one :class:`StartupError` listing every message, when there is any."""
    errors = list(errors)
    if errors:
        raise StartupError("invalid config:\n  - " + "\n  - ".join(errors))


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | None) -> int | None:
    """Return the seconds of ``30d``, ``12h``, ``15m`` or ``60s`` (None for None or "").

    Raises ValueError for anything else.
    """
    if not text:
        return None
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 15m or 60s")
    return int(match.group(1)) * _UNITS[match.group(2)]
