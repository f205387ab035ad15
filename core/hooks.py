"""The one way to call a hook one implementation at a time.

Most hooks are called through the plugin manager (``portal.hook.<name>(...)``), so ``firstresult``,
wrappers and optional arguments work. A few answers must be kept apart per plugin — a health
listing that raises, a usage provider, a chat record that one plugin fails on — and for those the
core calls each implementation itself, here: in pluggy's order, with only the arguments the
implementation declares, naming the plugin when it fails. Wrappers do not apply to such calls.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("agent_portal.hooks")

# the hooks called one implementation at a time somewhere (here, by the core or a built-in): a
# wrapper on one of them would never run there, so the plugin manager refuses it at startup
ONE_AT_A_TIME = frozenset({
    "portal_actor_from_request", "portal_admin_change", "portal_backends", "portal_chat_completed",
    "portal_commands", "portal_health_checks", "portal_jwt_keys", "portal_models", "portal_register_routes",
    "portal_shutdown", "portal_startup", "portal_usage_providers"})


def wrapper_errors(pm) -> list[str]:
    """Return one sentence per wrapper registered on a hook in :data:`ONE_AT_A_TIME`."""
    return [f"plugin {impl.plugin_name!r} wraps {name}, which the core calls one implementation at a "
            "time: the wrapper would never run (implement the hook itself)"
            for name in sorted(ONE_AT_A_TIME)
            for impl in getattr(pm.hook, name).get_hookimpls() if impl.hookwrapper or impl.wrapper]


@dataclass
class Answer:
    """One implementation's answer: its plugin, what it returned, or the exception it raised."""

    plugin: str
    value: Any = None
    error: BaseException | None = None


def implementations(hook_caller, order: list[str] | None = None) -> list:
    """Return the plain (non-wrapper) implementations of a hook in the order pluggy calls them,
    or, with ``order``, sorted by it (plugins it does not name keep pluggy's order, after it)."""
    impls = [i for i in reversed(hook_caller.get_hookimpls()) if not (i.hookwrapper or i.wrapper)]
    if order:
        rank = {name: i for i, name in enumerate(order)}
        impls.sort(key=lambda impl: rank.get(impl.plugin_name, len(rank)))
    return impls


def call_impl(impl, **kwargs):
    """Call one implementation with only the arguments it declares; returns what it returns."""
    return impl.function(*[kwargs[name] for name in impl.argnames])


def call_each(hook_caller, **kwargs) -> list[Answer]:
    """Call every implementation of a hook on its own; returns one :class:`Answer` per plugin.

    An exception is caught, logged with the plugin's name and returned in ``Answer.error``; it
    never stops the other implementations.
    """
    answers = []
    for impl in implementations(hook_caller):
        try:
            answers.append(Answer(impl.plugin_name, call_impl(impl, **kwargs)))
        except Exception as exc:
            log.warning("plugin %s failed in %s: %s: %s", impl.plugin_name, hook_caller.name,
                        type(exc).__name__, exc)
            answers.append(Answer(impl.plugin_name, error=exc))
    return answers
