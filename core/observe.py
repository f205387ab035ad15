"""Running every plugin's health checks and usage providers, each isolated under a timeout."""
from __future__ import annotations

import time

from .hooks import call_each
from .isolation import run_isolated
from .types import HealthCheck


def http_check(url: str, judge=None, timeout: float = 3.0):
    """Return a health check that GETs ``url``: anything but 200 is ``down`` with its status; a
    200 is ``up``, or what ``judge(body)`` says of its JSON body (a dict with ``status``)."""

    def check(portal):
        response = portal.http.get(url, timeout=timeout)
        if response.status_code != 200:
            return {"status": "down", "detail": f"HTTP {response.status_code}"}
        if judge is None:
            return {"status": "up", "detail": "HTTP 200"}
        try:
            body = response.json()
        except ValueError:
            return {"status": "down", "detail": "answered 200 with something other than JSON"}
        return judge(body if isinstance(body, dict) else {})

    return check


def collect_health_checks(portal) -> list:
    """Return every enabled plugin's :class:`HealthCheck`, each asked for on its own."""
    checks = []
    for answer in call_each(portal.hook.portal_health_checks, portal=portal):
        if answer.error is None:
            checks.extend(answer.value or [])
            continue

        def broken(portal, exc=answer.error):  # a plugin that cannot even list its checks is itself down
            raise exc

        checks.append(HealthCheck(answer.plugin, broken, timeout=0.1))
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
    for answer in call_each(portal.hook.portal_usage_providers, portal=portal):
        for provider in (answer.value or []) if answer.error is None else []:
            providers[provider.name] = provider
    return providers


def run_usage(portal, providers: dict, query, timeout: float = 10.0) -> dict:
    """Ask each provider in ``providers`` for ``query`` concurrently.

    Returns ``{name: {"ok": True, "data": rows} | {"ok": False, "error": reason}}``.
    """
    results = run_isolated((name, (lambda p=p: p.query(portal, query)), timeout)
                           for name, p in providers.items())
    return {name: ({"ok": True, "data": r["value"]} if r["ok"] else {"ok": False, "error": r["error"]})
            for name, r in results.items()}
