"""How the portal is started as a server: the gunicorn command line that the CLI's ``serve``, the
run command (``agent-portal up``) and the benchmarks share. It imports nothing of the portal, so a
launcher pays for no plugin."""
from __future__ import annotations

import os
import sys


def gunicorn_argv(config, host, port, workers) -> list[str]:
    """Return the command line that serves the portal under gunicorn."""
    # By file path: importing the package in gunicorn's master would load ssl before gevent patches it.
    conf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gunicorn_conf.py")
    argv = [sys.executable, "-m", "gunicorn", "-c", conf,
            "--bind", f"{host}:{port}"]
    if workers:
        argv += ["--workers", str(workers)]
    return argv + ["agent_portal.wsgi:app"]
