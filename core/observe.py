"""Running every plugin's health checks and usage providers, each isolated under a timeout."""
from __future__ import annotations

import time

from .isolation import run_isolated
from .types import HealthCheck


def collect_health_checks(portal) -> list:
    """Return every enabled plugin's :class:`HealthCheck`, each asked for on its own."""
    checks = []
    for impl in portal.hook.portal_health_checks.get_hookimpls():
        try:
            checks.extend(impl.function(portal=portal) or [])
        except Exception as exc:  # a plugin that cannot even list its checks is itself down

            def broken(portal, exc=exc):
                raise exc

            checks.append(HealthCheck(impl.plugin_name, broken, timeout=0.1))
    return checks


def run_health(portal, required_names: set | None = None) -> dict:
    """Run every health check concurrently and return the stack's health.

    Returns ``{"status": "up"|"degraded"|"down", "components": {name: {status, latency_ms,
    detail, required, ...}}}``; the stack is ``down`` when a required component is down.
    """
    checks = collect_health_checks(portal)
    results = run_isolated((c.name, (lambda c=c: c.check(portal)), c.timeout) for c in checks)
    components = {}
    overall = "up"
    for check in checks:
        result = results[check.name]
        required = check.required or (required_names is not None and check.name in required_names)
        if result["ok"] and isinstance(result["value"], dict):
            component = dict(result["value"])
            component.setdefault("status", "up")
            if component["status"] not in ("up", "degraded", "down"):
                component["status"] = "down"
        else:
            component = {"status": "down", "detail": result["error"] or "the check answered no status"}
        component["latency_ms"] = round((result["seconds"] or 0) * 1000, 1)
        component["required"] = required
        components[check.name] = component
        if component["status"] == "down" and required:
            overall = "down"
        elif component["status"] != "up" and overall == "up":
            overall = "degraded"
    return {"status": overall, "checked_at": time.time(), "components": components}


def collect_usage_providers(portal) -> dict:
    """Return ``{name: UsageProvider}`` of every enabled plugin."""
    providers = {}
    for impl in portal.hook.portal_usage_providers.get_hookimpls():
        try:
            for provider in impl.function(portal=portal) or []:
                providers[provider.name] = provider
        except Exception:
            continue
    return providers


def run_usage(portal, providers: dict, query, timeout: float = 10.0) -> dict:
    """Ask each provider in ``providers`` for ``query`` concurrently.

    Returns ``{name: {"ok": True, "data": rows} | {"ok": False, "error": reason}}``.
    """
    results = run_isolated((name, (lambda p=p: p.query(portal, query)), timeout)
                           for name, p in providers.items())
    return {name: ({"ok": True, "data": r["value"]} if r["ok"] else {"ok": False, "error": r["error"]})
            for name, r in results.items()}
