"""Running blocking or CPU-heavy work off a gevent worker's event loop.

A serving worker's greenlets share one OS thread: a long tokenizer count or a native call that
holds it freezes every open stream. :func:`off_loop` runs such work in gevent's hub threadpool (real
OS threads) and waits for it cooperatively, so other greenlets keep running; where gevent has not
patched the process (the CLI, tests, a job worker) it simply calls the function.
"""
from __future__ import annotations


def serving_under_gevent() -> bool:
    """Return True when this process runs gevent's patched threads (a serving worker)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return monkey.is_module_patched("threading")


def off_loop(func, *args, **kwargs):
    """Return ``func(*args, **kwargs)``, computed in a real OS thread when called from a gevent
    worker (the caller's greenlet waits; the others run), else computed here."""
    if not serving_under_gevent():
        return func(*args, **kwargs)
    import gevent

    return gevent.get_hub().threadpool.apply(func, args, kwargs)
