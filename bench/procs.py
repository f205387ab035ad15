"""Starting, stopping and weighing the benchmark's processes (no gevent here: importing this
patches nothing, so a benchmark that measures from plain threads can use it)."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from agent_portal.readiness import wait_until_ready

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_kb(pid: int, path: str, field: str) -> int:
    """Return the kB figure ``field`` of ``/proc/<pid>/<path>`` (0 when it is not there)."""
    with open(f"/proc/{pid}/{path}") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    """The process's proportional set size: its share of pages shared with the master."""
    return proc_kb(pid, "smaps_rollup", "Pss")


def rss_kb(pid: int) -> int:
    return proc_kb(pid, "status", "VmRSS")


def wait_http(url, seconds, process):
    # polled often: the time to /ready is one of the figures
    wait_until_ready(url, seconds, process, url, interval=0.02)


def start_upstream(port):
    process = subprocess.Popen([sys.executable, str(ROOT / "bench/upstream.py"), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v1/models", 20, process)
    return process


def stop(processes):
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
