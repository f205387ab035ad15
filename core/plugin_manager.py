"""The plugin manager: built-in plugins switched on by config, third-party ones by entry point."""
from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from .config import schema_errors
from .errors import StartupError

log = logging.getLogger("agent_portal.plugins")

ENTRY_POINT_GROUP = "agent_portal"

# Built-in plugins, each enabled only when its section ``plugins.<name>`` is present and its
# ``enabled`` is not false.
BUILTIN_PLUGINS = {
    "chat": "agent_portal.plugins.chat",
    "litellm": "agent_portal.plugins.litellm",
    "openai_compat": "agent_portal.plugins.openai_compat",
    "portal_tokens": "agent_portal.plugins.portal_tokens",
    "openwebui_session": "agent_portal.plugins.openwebui_session",
    "openwebui_header": "agent_portal.plugins.openwebui_header",
    "api_keys": "agent_portal.plugins.api_keys",
    "ledger": "agent_portal.plugins.ledger",
    "observability": "agent_portal.plugins.observability",
    "metrics": "agent_portal.plugins.metrics",
    "rate_limits": "agent_portal.plugins.rate_limits",
    "kong": "agent_portal.plugins.kong",
    "embeds": "agent_portal.plugins.embeds",
    "langfuse": "agent_portal.plugins.langfuse",
    "helicone": "agent_portal.plugins.helicone",
    "dashboard": "agent_portal.plugins.dashboard",
}


def discover_entry_points() -> dict:
    """Return ``{name: entry_point}`` for every installed third-party plugin."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def build_plugin_manager(config: dict, third_party: dict | None = None) -> tuple[pluggy.PluginManager, dict]:
    """Return a fresh plugin manager for one app, and ``{plugin_name: source}``.

    Registers the built-in plugins that ``config`` enables and every installed third-party plugin
    (``third_party``, discovered when not given) that ``portal.blocked_plugins`` does not block;
    raises :class:`StartupError` for a section naming no installed plugin.
    """
    pm = pluggy.PluginManager("agent_portal")
    pm.add_hookspecs(hookspecs)
    sections = config.get("plugins") or {}
    blocked = set(config["portal"].get("blocked_plugins") or [])
    third_party = discover_entry_points() if third_party is None else third_party
    sources = {}

    cfg_errors = unknown_plugin_errors(config, third_party)
    if cfg_errors:
        raise StartupError("invalid config:\n  - " + "\n  - ".join(cfg_errors))

    for name, module_path in BUILTIN_PLUGINS.items():
        if name not in sections or name in blocked or not _enabled(sections[name]):
            continue
        pm.register(importlib.import_module(module_path), name=name)
        sources[name] = "built-in"

    for name, entry_point in sorted(third_party.items()):
        if name in blocked or name in BUILTIN_PLUGINS or not _enabled(sections.get(name)):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken third-party package must name itself
            raise StartupError(f"plugin {name!r} ({entry_point.value}) failed to load: {exc}") from exc
        pm.register(plugin, name=name)
        sources[name] = f"entry point {entry_point.value}"

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise StartupError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from exc
    return pm, sources


def unknown_plugin_errors(config: dict, third_party: dict | None = None) -> list[str]:
    """Return one error per ``plugins.<name>`` section that names no installed plugin."""
    sections = config.get("plugins") or {}
    if not isinstance(sections, dict):
        return []
    known = set(BUILTIN_PLUGINS) | set(discover_entry_points() if third_party is None else third_party)
    return [f"plugins.{name}: no plugin named {name!r} is installed" for name in sorted(set(sections) - known)]


def _enabled(section) -> bool:
    return section is None or not isinstance(section, dict) or section.get("enabled", True) is not False


def validate_plugin_sections(pm: pluggy.PluginManager, config: dict) -> list[str]:
    """Return every config error of the registered plugins' sections, with defaults filled in."""
    errors = []
    sections = config.setdefault("plugins", {})
    for answer in pm.hook.portal_config_schema():
        for name, schema in (answer or {}).items():
            section = sections.get(name) or {}
            schema = dict(schema)
            schema["properties"] = {"enabled": {"type": "boolean"}, **schema.get("properties", {})}
            errors.extend(schema_errors(section, schema, f"plugins.{name}"))
            for key, spec in schema["properties"].items():
                if "default" in spec and key not in section:
                    section[key] = spec["default"]
            sections[name] = section
    return errors


def plugin_hooks(pm: pluggy.PluginManager) -> dict:
    """Return ``{plugin_name: [hook names it implements]}``."""
    result = {}
    for name, plugin in pm.list_name_plugin():
        result[name] = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return result
