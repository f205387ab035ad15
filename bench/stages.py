"""Where a non-streamed call's time goes inside the portal, stage by stage, in microseconds.

    python bench/stages.py             # 2,000 calls, 2 ms apart, through the shipped config
    python bench/stages.py --calls 500
    python bench/stages.py --floor     # also the floor: apps that answer at once, served alike

Serves the shipped config (config/portal.example.yaml, the litellm backend pointed at the fast
fake upstream, INFO logs) under gunicorn with one gevent worker, as ``bench/run.py`` does, with
timers wrapped around each stage inside the worker (see :data:`STAGES`). Prints each stage's
mean and p50 per call, and the client's added latency over the direct upstream in the same run.
The timers themselves cost about a microsecond per stage.

With ``--floor``, also what any Python gateway served this way pays before doing anything: the
apps of ``bench/floor_apps.py`` (a bare WSGI callable, a minimal Flask app) under gunicorn with
one gevent worker, and the bare callable under gevent's own WSGI server (``gevent_pywsgi``),
each answering a chat call at once with a fixed body, called in turn with the upstream directly
and the portal (calls to each at least ``--think-ms`` apart).
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import wait_http  # noqa: E402
from run import (Target, free_port, ms, pct, rotating, sequential, start_portal, start_upstream,  # noqa: E402
                 stop)

FLOOR_SERVERS = [  # (label, gunicorn worker class, app in bench/floor_apps.py)
    ("a bare WSGI app, gunicorn gevent worker", "gevent", "floor_apps:raw_app"),
    ("a bare WSGI app, gunicorn gevent_pywsgi worker", "gevent_pywsgi", "floor_apps:raw_app"),
    ("a minimal Flask app, gunicorn gevent worker", "gevent", "floor_apps:flask_app"),
]

# (label, module, owner, attribute): each is timed where the worker looks it up at call time.
STAGES = [
    ("request handling (gunicorn: environ, WSGI call, write)", "gunicorn.workers.base_async", "AsyncWorker",
     "handle_request"),
    ("  Flask request cycle (everything below included)", "flask.app", "Flask", "wsgi_app"),
    ("    before the view (request id, auth, access, body check)", "flask.app", "Flask", "preprocess_request"),
    ("      auth: who is calling", "agent_portal.app", "Portal", "actor_from_request"),
    ("    chat view: body read and filtered", "agent_portal.plugins.chat", None, "read_chat_body"),
    ("    chat view: admission, attribution, upstream call", "agent_portal.plugins.chat.call", "ChatCall", "open"),
    ("      of which the upstream's round trip (the chat client)", "agent_portal.upstream", "OpenAIUpstream", "send_chat"),
    ("    chat view: answer read, counted, record queued", "agent_portal.plugins.chat.call", "ChatCall",
     "plain_answer"),
    ("    after the view (plugins' after_request)", "flask.app", "Flask", "process_response"),
    ("    teardown", "flask.app", "Flask", "do_teardown_request"),
    ("off the request: the record to every plugin (ledger, metrics, traces)", "agent_portal.dispatch",
     "ChatRecordDispatcher", "deliver"),
    ("  of which the call's log line", "agent_portal.logs", "CurrentStderrHandler", "emit"),
]
BODY_CHECK = "      body checked against the route's schema"


def install():
    """Wrap every stage with a timer in this (worker) process. Returns ``(samples, timed)``:
    the seconds of each call per label, and the wrapper for any other callable."""
    import importlib
    import time

    samples: dict = {}

    def timed(label, func):
        bucket = samples.setdefault(label, [])

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                bucket.append(time.perf_counter() - start)

        return wrapper

    for label, module, owner, attribute in STAGES:
        target = importlib.import_module(module)
        target = getattr(target, owner) if owner else target
        setattr(target, attribute, timed(label, getattr(target, attribute)))
    return samples, timed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--think-ms", type=float, default=2.0)
    parser.add_argument("--floor", action="store_true", help="also measure the floor apps beside the portal")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="agent-portal-stages-")
    out = Path(workdir) / "stages.json"
    os.environ["PORTAL_STAGES_OUT"] = str(out)
    processes = []
    try:
        upstream_port = free_port()
        processes.append(start_upstream(upstream_port))
        port = free_port()
        portal, token, _, _ = start_portal(port, upstream_port, workdir, "shipped",
                                           gunicorn_conf=str(Path(__file__).resolve().parent / "stages_conf.py"))
        processes.append(portal)
        direct = Target("direct", upstream_port, "/v1/chat/completions", {}, "echo")
        through = Target("portal", port, "/v1/chat/completions", {"Authorization": f"Bearer {token}"}, "echo")
        for target in (direct, through):
            sequential(target, 200)
        think = args.think_ms / 1000
        direct_lat, _ = sequential(direct, args.calls, think=think)
        portal_lat, _ = sequential(through, args.calls, think=think)
        floor = measure_floor(direct, through, args.calls, think) if args.floor else None
        stop([portal])
        processes.remove(portal)
    finally:
        stop(processes)
    samples = json.loads(out.read_text())
    warm = 200  # the warm-up calls are in the worker's samples too; leave them out
    print(f"{args.calls} non-streamed calls, {args.think_ms} ms apart, shipped config, one gevent worker\n")
    print(f"{'stage':78} {'mean us':>9} {'p50 us':>9}")
    for label in [s[0] for s in STAGES[:4]] + [BODY_CHECK] + [s[0] for s in STAGES[4:]]:
        values = samples.get(label, [])[warm:]
        if not values:
            continue
        mean = sum(values) / len(values) * 1e6
        print(f"{label:78} {mean:9.1f} {pct(values, 0.5) * 1e6:9.1f}")
    added = ms(pct(portal_lat, 0.5) - pct(direct_lat, 0.5))
    print(f"\nclient: direct p50 {ms(pct(direct_lat, 0.5))} ms, portal p50 {ms(pct(portal_lat, 0.5))} ms, "
          f"added {added} ms")
    if floor:
        print(f"\nthe floor: each called in turn, {args.calls} calls each, as an outside caller sees it\n")
        print(f"{'server':60} {'p50 ms':>8} {'p99 ms':>8} {'over direct p50':>16}")
        base = pct(floor["the upstream, directly"], 0.5)
        for label, latencies in floor.items():
            print(f"{label:60} {ms(pct(latencies, 0.5)):8.3f} {ms(pct(latencies, 0.99)):8.3f} "
                  f"{ms(pct(latencies, 0.5) - base):16.3f}")


def measure_floor(direct, portal, calls, think) -> dict:
    """Return ``{label: latencies}`` of the upstream, each floor app and the portal, called in turn."""
    here = str(Path(__file__).resolve().parent)
    processes, targets = [], [direct]
    try:
        for label, worker, app in FLOOR_SERVERS:
            port = free_port()
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-k", worker, "-w", "1", "-b", f"127.0.0.1:{port}", "--chdir",
                 here, "--log-level", "warning", app], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_http(f"http://127.0.0.1:{port}/", 20, processes[-1])
            targets.append(Target(label, port, "/v1/chat/completions", {}, "echo"))
        targets.append(portal)
        for target in targets:
            sequential(target, 200)
        found = rotating(targets, calls, think=think)
    finally:
        stop(processes)
    labels = {direct.name: "the upstream, directly", portal.name: "the portal (shipped config)"}
    return {labels.get(t.name, t.name): found[t.name][0] for t in targets}


if __name__ == "__main__":
    main()
