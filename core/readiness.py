"""Waiting for a service that was just started to answer, shared by the launchers and the benchmark."""
from __future__ import annotations

import subprocess
import time

import requests


def wait_until_ready(url: str, seconds: float, process: subprocess.Popen, what: str,
                     interval: float = 0.25) -> None:
    """Return once ``url`` answers 200; exit naming ``what`` if ``process`` dies or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with code {process.returncode} before it was ready")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise SystemExit(f"{what} was not ready at {url} after {seconds:.0f}s")
