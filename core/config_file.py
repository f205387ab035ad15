"""Reading the portal's config file: YAML that names no key twice, ``${VAR}`` and
``${VAR:-default}`` filled from the environment, a relative SQLite path anchored at the file."""
from __future__ import annotations

import os
import re
from typing import Any

import yaml

from .errors import StartupError

ENV_VAR = "AGENT_PORTAL_CONFIG"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def anchor_sqlite(url: str, base_dir: str | None) -> str:
    """Return ``url`` with a relative SQLite path made absolute against ``base_dir`` (the config
    file's folder), so every command finds the same database wherever it is run from."""
    prefix = "sqlite:///"
    if base_dir is None or not url.startswith(prefix) or url.startswith(prefix + "/") or url == prefix + ":memory:":
        return url
    return prefix + os.path.normpath(os.path.join(base_dir, url[len(prefix):]))


def config_path(path: str | None) -> str | None:
    """Return the config file ``path`` names (or ``$AGENT_PORTAL_CONFIG``), None when neither does."""
    return path or os.environ.get(ENV_VAR) or None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that names one key twice (YAML's spec forbids it;
    PyYAML would keep the later one, so a section added above an old one would silently lose)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base loader reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice: on line {first} and on line "
                    f"{key_node.start_mark.line + 1} (the later one would win silently)", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_config_file(path: str | None) -> dict:
    """Return the parsed YAML of ``path`` (or ``$AGENT_PORTAL_CONFIG``), env filled; {} if none."""
    path = path or os.environ.get(ENV_VAR)
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.load(handle, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError as exc:
        raise StartupError(f"config file {path!r} not found") from exc
    except yaml.YAMLError as exc:
        raise StartupError(f"config file {path!r} is not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StartupError(f"config file {path!r} must hold a mapping at the top level")
    return raw


def fill_environment(value: Any, environ=None, where: str = "", missing=None, origins=None) -> Any:
    """Return ``value`` with ``${VAR}`` and ``${VAR:-default}`` filled from ``environ``.

    A string that is one placeholder and fills to "" becomes None, so ``${REDIS_URL:-}`` means
    "not set". Names of unset variables without a default are appended to ``missing``;
    ``origins``, when given, maps each filled setting's path to the variable it came from.
    """
    environ = os.environ if environ is None else environ
    missing = [] if missing is None else missing
    if isinstance(value, dict):
        return {k: fill_environment(v, environ, f"{where}.{k}" if where else str(k), missing, origins)
                for k, v in value.items()}
    if isinstance(value, list):
        return [fill_environment(v, environ, f"{where}[{i}]", missing, origins) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match):
        name, default = match.group(1), match.group(2)
        if origins is not None:
            origins[where] = name
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        missing.append(f"{where}: ${{{name}}} is not set in the environment")
        return ""

    filled = _PLACEHOLDER.sub(replace, value)
    if filled == "" and _PLACEHOLDER.fullmatch(value):
        return None
    return filled
