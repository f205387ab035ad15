"""Run per-plugin work concurrently, each piece under its own timeout, failures kept apart."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable

log = logging.getLogger("agent_portal.isolation")


def run_isolated(jobs: Iterable[tuple[str, Callable[[], Any], float]]) -> dict:
    """Run each ``(name, call, timeout)`` in its own thread (a greenlet under gevent).

    Returns ``{name: {"ok": bool, "value": ..., "error": str | None, "seconds": float}}``.
    A call that raises answers its error; one still running at its timeout answers
    ``"timed out after Ns"`` and is left to finish on its own, never blocking the others.
    """
    results: dict[str, dict] = {}
    running = []
    for name, call, timeout in jobs:
        slot = {"ok": False, "value": None, "error": None, "seconds": None}
        done = threading.Event()
        started = time.monotonic()

        def work(call=call, slot=slot, done=done, started=started, name=name):
            try:
                slot["value"] = call()
                slot["ok"] = True
            except Exception as exc:
                log.warning("isolated job %s failed: %s", name, exc)
                slot["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                slot["seconds"] = round(time.monotonic() - started, 4)
                done.set()

        threading.Thread(target=work, name=f"isolated-{name}", daemon=True).start()
        running.append((name, slot, done, started, timeout))

    for name, slot, done, started, timeout in running:
        remaining = started + timeout - time.monotonic()
        if not done.wait(max(remaining, 0)):
            results[name] = {"ok": False, "value": None,
                             "error": f"timed out after {timeout:g}s", "seconds": timeout}
        else:
            results[name] = dict(slot)
    return results
