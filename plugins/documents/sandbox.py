"""Parsing a file in a child process of the job worker, bounded in time and memory.

A hostile file (a page tree that loops, a zip that inflates to gigabytes, a parser's slow path)
costs at most ``parse_timeout_seconds`` and ``parse_memory_mb``: past either the child is killed
and the file fails with the reason. The child is a fresh interpreter (``python -m`` this module):
nothing of the worker's (its model, its threads) is forked into it.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time

from .parsing import BadDocument, Caps, Section, TooLarge, UnsupportedType, parse

_ERRORS = {"unsupported": UnsupportedType, "bad": BadDocument, "too_large": TooLarge}


class Stopped(Exception):
    """``should_stop()`` said yes while the child parsed: it was killed, the file is not at fault."""


def parse_in_child(name: str, data: bytes, caps: Caps, timeout: float, memory_mb: int,
                   should_stop=lambda: False) -> list[Section]:
    """Return the sections of the file ``name``, parsed in a child process.

    Raises what :func:`parsing.parse` raises; :class:`TooLarge` when the child runs past
    ``timeout`` seconds or ``memory_mb`` of memory; :class:`Stopped` when ``should_stop()``
    turns true first. The child is in a session of its own: a Ctrl-C meant for the worker does
    not kill it and fail the file.
    """
    header = json.dumps({"name": name, "max_pages": caps.max_pages, "max_text_chars": caps.max_text_chars,
                         "memory_mb": memory_mb, "cpu_seconds": int(timeout) + 2})
    with tempfile.TemporaryFile() as given:  # a file, not a pipe: nothing to feed while it works
        given.write(header.encode() + b"\n" + data)
        given.seek(0)
        child = subprocess.Popen([sys.executable, "-m", __name__], stdin=given, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, close_fds=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        stop = should_stop()  # asked before each wait, so a stop is seen even when the parse is quick
        if stop or time.monotonic() >= deadline:
            child.kill()
            child.communicate()
            if stop:
                raise Stopped(name)
            raise TooLarge(f"{name}: parsing took longer than {timeout:g} s "
                           "(documents.worker.parse_timeout_seconds)")
        try:  # in slices, to notice a stop; a retried communicate() keeps what it read
            out, err = child.communicate(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        answer = json.loads(out)
    except ValueError:
        if child.returncode in (-9, -24) or b"MemoryError" in err:  # SIGKILL/SIGXCPU, or out of memory
            raise TooLarge(f"{name}: parsing needed more than {memory_mb} MB or its CPU time "
                           "(documents.worker.parse_memory_mb, parse_timeout_seconds)") from None
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {child.returncode}"]
        raise BadDocument(f"{name}: the parser failed ({tail[0][:300]})") from None
    if "error" in answer:
        raise _ERRORS[answer["kind"]](answer["error"])
    return [Section(text, page, heading) for text, page, heading in answer["sections"]]


def _main() -> int:
    header = json.loads(sys.stdin.buffer.readline())
    # a ceiling on this process's memory and CPU time, before it reads the file
    memory = header["memory_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (header["cpu_seconds"], header["cpu_seconds"]))
    data = sys.stdin.buffer.read()
    caps = Caps(max_pages=header["max_pages"], max_text_chars=header["max_text_chars"])
    try:
        sections = parse(header["name"], data, caps)
        answer = {"sections": [[s.text, s.page, s.heading] for s in sections]}
    except TooLarge as exc:
        answer = {"error": str(exc), "kind": "too_large"}
    except UnsupportedType as exc:
        answer = {"error": str(exc), "kind": "unsupported"}
    except BadDocument as exc:
        answer = {"error": str(exc), "kind": "bad"}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
