"""The plugin manager: built-in plugins switched on by config, third-party ones on unless blocked.

Both are found as entry points of installed distributions; the core names no plugin.
"""
from __future__ import annotations

import logging
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from .config import fill_defaults, schema_errors
from .errors import StartupError
from .hooks import wrapper_errors

log = logging.getLogger("agent_portal.plugin_manager")

ENTRY_POINT_GROUP = "agent_portal"
BUILTIN_GROUP = "agent_portal.builtin"


def discover_builtins() -> dict:
    """Return ``{name: entry_point}`` of the plugins shipped with the portal, in name order.

    They are entry points of the distribution (group ``agent_portal.builtin``), found the way a
    third party's are; each runs only when config has its section (``plugins.<name>``).
    """
    return {ep.name: ep for ep in entry_points(group=BUILTIN_GROUP)}


def discover_entry_points() -> dict:
    """Return ``{name: entry_point}`` for every installed third-party plugin (group ``agent_portal``)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load(name: str, entry_point):
    try:
        return entry_point.load()
    except Exception as exc:  # a broken package must name itself
        raise StartupError(f"plugin {name!r} ({entry_point.value}) failed to load: {exc}") from exc


def build_plugin_manager(config: dict, builtins: dict, third_party: dict,
                         extra: list | None = None, refuse_unknown: bool = True) -> tuple[pluggy.PluginManager, dict]:
    """Return a fresh plugin manager for one app, and ``{plugin_name: source}``.

    Registers the built-in plugins that ``config`` enables, every third-party plugin that
    ``portal.blocked_plugins`` does not block, and the ``extra`` plugin objects (a test's or an
    embedding program's), each under its ``name`` attribute or its module's name. With
    ``refuse_unknown`` false a section naming no installed plugin is left for the caller to
    report, with every other mistake of the config.
    """
    pm = pluggy.PluginManager("agent_portal")
    pm.add_hookspecs(hookspecs)
    sections = config.get("plugins") or {}
    blocked = set(config["portal"].get("blocked_plugins") or [])
    sources = {}

    cfg_errors = unknown_plugin_errors(config, builtins, third_party, extra) if refuse_unknown else []
    if cfg_errors:
        raise StartupError("invalid config:\n  - " + "\n  - ".join(cfg_errors))

    for name, entry_point in builtins.items():
        if name not in sections or name in blocked or not _enabled(sections[name]):
            continue
        pm.register(_load(name, entry_point), name=name)
        sources[name] = "built-in"

    for name, entry_point in sorted(third_party.items()):
        if name in blocked or name in builtins or not _enabled(sections.get(name)):
            continue
        pm.register(_load(name, entry_point), name=name)
        sources[name] = f"entry point {entry_point.value}"

    for plugin in extra or []:
        name = plugin_name(plugin)
        if name in blocked or not _enabled(sections.get(name)):
            continue
        pm.register(plugin, name=name)
        sources[name] = "given to create_app"

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise StartupError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from exc
    refused = wrapper_errors(pm)
    if refused:
        raise StartupError("invalid plugins:\n  - " + "\n  - ".join(refused))
    return pm, sources


def catalog_plugin_manager(extra: list | None = None) -> pluggy.PluginManager:
    """Return a plugin manager with every installed plugin (and ``extra``) registered, enabled or
    not, for what does not depend on a config (the command line); one that fails to load is left out."""
    pm = pluggy.PluginManager("agent_portal")
    pm.add_hookspecs(hookspecs)
    for name, entry_point in {**discover_entry_points(), **discover_builtins()}.items():
        try:
            pm.register(entry_point.load(), name=name)
        except Exception as exc:
            log.warning("plugin %s could not be loaded: %s", name, exc)
    for plugin in extra or []:
        pm.register(plugin, name=plugin_name(plugin))
    return pm


def plugin_name(plugin) -> str:
    """Return the name a plugin object registers under: its ``name`` attribute, else its module's
    last part, else its class name."""
    explicit = getattr(plugin, "name", None)
    if isinstance(explicit, str):
        return explicit
    module = getattr(plugin, "__name__", None)
    if isinstance(module, str):
        return module.rsplit(".", 1)[-1]
    return type(plugin).__name__


def unknown_plugin_errors(config: dict, builtins: dict, third_party: dict, extra: list | None = None) -> list[str]:
    """Return one error per ``plugins.<name>`` section that names no installed plugin."""
    sections = config.get("plugins") or {}
    if not isinstance(sections, dict):
        return []
    known = set(builtins) | set(third_party) | {plugin_name(p) for p in extra or []}
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
            sections[name] = fill_defaults(section, schema)
    return errors


def plugin_hooks(pm: pluggy.PluginManager) -> dict:
    """Return ``{plugin_name: [hook names it implements]}``."""
    result = {}
    for name, plugin in pm.list_name_plugin():
        result[name] = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return result
