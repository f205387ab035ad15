"""Benchmark: the portal beside the direct upstream and a LiteLLM proxy, in one run.

    python bench/run.py            # the full run (several minutes)
    python bench/run.py --smoke    # a few seconds, no LiteLLM: proves the benchmark still works

Everything runs on 127.0.0.1: the tests' fake upstream (under gevent), the portal as the README's
run command ships it (config/portal.example.yaml, gunicorn with one gevent worker, the litellm
backend pointed at the fake upstream, INFO logs, the default plugins, a real token), the slim
variant beside it, and a LiteLLM proxy (one worker). Two regimes, each figure named by its own:
back-to-back (one target's calls in a row, ``--think-ms`` between calls) and sparse (the targets
called in turn, each at most once every ``--sparse-gap-ms``, so whatever goes cold between one
caller's calls is paid as a real deployment pays it). Prints the figures, the goals met or not
in both regimes (and, for a latency goal not met, ``bench/stages.py --floor``: where the time goes
inside the portal and what a server alone costs here), and writes ``bench/results/report.json``
and ``report.md``. ``--baseline REVISION`` also serves the code of an earlier commit beside it.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadgen import Connection, StreamTimer, chat_body  # noqa: E402
from procs import free_port, pss_kb, rss_kb, start_upstream, stop, wait_http  # noqa: E402


ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def pct(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]


def ms(value):
    return None if value is None else round(value * 1000, 3)


class Target:
    def __init__(self, name, port, path, headers, model):
        self.name, self.port, self.path, self.headers, self.model = name, port, path, headers, model


# --- measurements -------------------------------------------------------------------------------


def sequential(target, count, stream=False, max_tokens=5, think=0.0):
    """One caller, one keep-alive connection, ``think`` seconds between calls (so an idle worker
    wakes up as in real traffic). Returns ``(latencies, first-chunk times)`` in seconds."""
    conn = Connection("127.0.0.1", target.port)
    latencies, firsts = [], []
    body = chat_body(target.model, stream, max_tokens)
    for _ in range(count):
        if think:
            time.sleep(think)
        timer = StreamTimer()
        status, _ = conn.post(target.path, body, target.headers, timer if stream else None)
        if status != 200:
            raise SystemExit(f"{target.name}: HTTP {status}")
        end = time.perf_counter()
        latencies.append(end - timer.start)
        if stream:
            firsts.append(timer.first - timer.start)
    conn.close()
    return latencies, firsts


def rotating(targets, count, stream=False, think=0.0, gap=0.0):
    """Sparse traffic: one caller per target, each on its own keep-alive connection, calling the
    targets in turn, ``think`` seconds between calls and at least ``gap`` seconds between two
    calls to the same target (what a gateway sees between one user's calls when others call
    other services). Returns ``{target name: (latencies, first-chunk times)}`` in seconds."""
    conns = {t.name: Connection("127.0.0.1", t.port) for t in targets}
    bodies = {t.name: chat_body(t.model, stream, 5) for t in targets}
    out = {t.name: ([], []) for t in targets}
    pause = max(think, gap / len(targets))
    for _ in range(count):
        for target in targets:
            time.sleep(pause)
            timer = StreamTimer()
            status, _ = conns[target.name].post(target.path, bodies[target.name], target.headers,
                                                timer if stream else None)
            if status != 200:
                raise SystemExit(f"{target.name}: HTTP {status}")
            out[target.name][0].append(time.perf_counter() - timer.start)
            if stream:
                out[target.name][1].append(timer.first - timer.start)
    for conn in conns.values():
        conn.close()
    return out


def sparse(targets, n_seq, n_stream, think, gap):
    """The sparse regime's figures per target (see :func:`rotating`)."""
    print(f"measuring every target in turn (sparse: a call to each every {gap * 1000:g} ms or more) ...",
          flush=True)
    plain = rotating(targets, n_seq, think=think, gap=gap)
    streamed = rotating(targets, n_stream, stream=True, think=think, gap=gap)
    return {t.name: {"n": n_seq, "p50_ms": ms(pct(plain[t.name][0], 0.5)), "p99_ms": ms(pct(plain[t.name][0], 0.99)),
                     "ttft_p50_ms": ms(pct(streamed[t.name][1], 0.5)),
                     "ttft_p99_ms": ms(pct(streamed[t.name][1], 0.99))} for t in targets}


def throughput(target, callers, seconds):
    latencies, errors = [], [0]
    deadline = time.perf_counter() + seconds
    body = chat_body(target.model, False)

    def caller():
        conn = Connection("127.0.0.1", target.port)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                status, _ = conn.post(target.path, body, target.headers)
            except (OSError, ConnectionError):
                errors[0] += 1
                conn.close()
                continue
            if status != 200:
                errors[0] += 1
            latencies.append(time.perf_counter() - start)
        conn.close()

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(caller) for _ in range(callers)])
    elapsed = time.perf_counter() - started
    return {"callers": callers, "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": ms(pct(latencies, 0.5)), "p99_ms": ms(pct(latencies, 0.99)), "errors": errors[0]}


def many_streams(target, count, worker_pid, expected_frames):
    timers, failures, reasons = [], [0], {}
    baseline = rss_kb(worker_pid) if worker_pid else 0
    peak = [baseline]
    body = chat_body("long", True)

    def failed(reason: str) -> None:
        failures[0] += 1
        reasons[reason] = reasons.get(reason, 0) + 1

    def one():
        conn = Connection("127.0.0.1", target.port, timeout=120)
        timer = StreamTimer()
        try:
            status, _ = conn.post(target.path, body, target.headers, timer)
            if status != 200:
                failed(f"HTTP {status}")
        except (OSError, ConnectionError) as exc:
            failed(type(exc).__name__)
        finally:
            conn.close()
        timers.append(timer)

    def sample():
        while True:
            if worker_pid:
                peak[0] = max(peak[0], rss_kb(worker_pid))
            gevent.sleep(0.2)

    sampler = gevent.spawn(sample)
    greenlets = []
    for _ in range(count):
        greenlets.append(gevent.spawn(one))
        gevent.sleep(0.001)  # ramp up over ~count ms, as real clients arrive
    gevent.joinall(greenlets)
    sampler.kill()
    frames = sum(t.frames for t in timers)
    gaps = [g for t in timers for g in t.gaps]
    return {"streams": count, "failed": failures[0], "why": reasons, "chunks_expected": count * expected_frames,
            "chunks_lost": count * expected_frames - frames, "p99_gap_ms": ms(pct(gaps, 0.99)),
            "memory_per_stream_kb": round((peak[0] - baseline) / count, 1) if worker_pid else None}


# --- processes ---------------------------------------------------------------------------------


def slim_config(upstream_port, workdir) -> dict:
    """The slim variant: an ``openai_compat`` upstream, WARNING logs, only chat's plugins."""
    return {
        "portal": {"secret_key": secrets.token_urlsafe(32), "database_url": f"sqlite:///{workdir}/slim.db",
                   "log_level": "WARNING"},
        "plugins": {
            "chat": {}, "portal_tokens": {}, "ledger": {}, "observability": {}, "metrics": {},
            "openai_compat": {"upstreams": {"fake": {
                "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                "models": ["echo", "long", "slow-20"]}}},
        },
    }


def start_portal(port, upstream_port, workdir, variant="shipped", workers=1, gunicorn_conf=None, code=None):
    """Start the portal as ``variant`` (shipped: config/portal.example.yaml as the README's run
    command serves it, through the ``litellm`` backend, INFO logs; slim: :func:`slim_config`).
    ``gunicorn_conf`` replaces the portal's gunicorn settings file (``bench/stages.py``); ``code``
    is a folder holding another version of the package (``agent_portal``) to serve instead.
    Returns ``(process, token, seconds to /ready, worker pid)``."""
    env = {**os.environ, "PORTAL_WORKERS": str(workers), "PORTAL_GRACEFUL_SECONDS": "3",
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp()}
    if code:
        env["PYTHONPATH"] = code
    if variant == "shipped":
        path = ROOT / "config" / "portal.example.yaml"
        # the upstream plays the LiteLLM proxy the run command starts: same backend, same path
        env.update({"PORTAL_SECRET_KEY": secrets.token_urlsafe(32),
                    "PORTAL_DATABASE_URL": f"sqlite:///{workdir}/shipped-{port}.db",
                    "PORTAL_LEDGER_JOURNAL_DIR": f"{workdir}/journal-{port}",
                    "LITELLM_URL": f"http://127.0.0.1:{upstream_port}", "LITELLM_MASTER_KEY": "sk-" + secrets.token_hex(16)})
    else:
        path = Path(workdir) / f"{variant}.yaml"
        path.write_text(yaml.safe_dump(slim_config(upstream_port, workdir)))
    started = time.monotonic()
    from agent_portal.launch import gunicorn_argv

    argv = gunicorn_argv(str(path), "127.0.0.1", port, workers)
    if gunicorn_conf:
        argv[argv.index("-c") + 1] = gunicorn_conf
    env["AGENT_PORTAL_CONFIG"] = str(path)
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/ready", 30, process)
    ready = time.monotonic() - started
    token = subprocess.check_output(
        [sys.executable, "-m", "agent_portal.cli", "token", "--config", str(path), "--user", "bench",
         "--role", "user", "--ttl", "1h"], env=env, text=True).strip().splitlines()[-1]
    worker = int(subprocess.check_output(["pgrep", "-P", str(process.pid)]).split()[0])
    return process, token, ready, worker


def start_litellm(port, upstream_port, workdir):
    binary = os.environ.get("LITELLM_BIN", str(ROOT / ".cache/litellm-venv/bin/litellm"))
    if not Path(binary).exists():
        return None, None
    key = "sk-" + secrets.token_hex(16)
    config = {"model_list": [{"model_name": m, "litellm_params": {
        "model": f"openai/{m}", "api_base": f"http://127.0.0.1:{upstream_port}/v1", "api_key": "x"}}
        for m in ("echo", "long")],
        "litellm_settings": {"num_retries": 0}, "general_settings": {"master_key": key}}
    path = Path(workdir) / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    process = subprocess.Popen([binary, "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
                                "--num_workers", "1"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", 150, process)
    return process, key


# --- the run -----------------------------------------------------------------------------------


def back_to_back(targets, n_seq, n_stream, think, rounds=10) -> dict:
    """The back-to-back regime's figures per target: each target's calls in a row (``think``
    seconds apart), in ``rounds`` blocks taken in turn, so that a slow minute of the machine
    falls on every target alike. Returns ``{name: {"sequential": ..., "streamed": ...}}``."""
    print("measuring each target's calls back to back ...", flush=True)
    found = {t.name: ([], []) for t in targets}
    for _ in range(rounds):
        for target in targets:
            found[target.name][0].extend(sequential(target, max(1, n_seq // rounds), think=think)[0])
            found[target.name][1].extend(sequential(target, max(1, n_stream // rounds), stream=True,
                                                    think=think)[1])
    return {name: {"sequential": {"n": len(lat), "p50_ms": ms(pct(lat, 0.5)), "p99_ms": ms(pct(lat, 0.99))},
                   "streamed": {"n": len(first), "ttft_p50_ms": ms(pct(first, 0.5)),
                                "ttft_p99_ms": ms(pct(first, 0.99))}}
            for name, (lat, first) in found.items()}


def measure(target, figures, seconds, callers_list, smoke):
    """Add to ``figures`` (its back-to-back ones) a target's long stream and its throughput."""
    print(f"measuring {target.name} ...", flush=True)
    long_total, _ = sequential(target, 3 if smoke else 20, stream=True, max_tokens=200)
    figures["streamed"]["total_200_chunks_p50_ms"] = ms(pct(long_total, 0.5))
    figures["throughput"] = [throughput(target, c, seconds) for c in callers_list]
    return figures


def scaling(upstream_port, workdir, counts, seconds, callers):
    """Requests/s of the shipped portal with each worker count in ``counts``, ``callers`` at once."""
    points = []
    for workers in counts:
        port = free_port()
        process, token, _, _ = start_portal(port, upstream_port, workdir, "shipped", workers)
        try:
            target = Target(f"portal x{workers}", port, "/v1/chat/completions",
                            {"Authorization": f"Bearer {token}"}, "echo")
            sequential(target, 100)
            print(f"throughput with {workers} workers ...", flush=True)
            points.append({"workers": workers, **throughput(target, callers, seconds)})
        finally:
            stop([process])
    return points


def run(args):
    smoke = args.smoke
    n_seq = 40 if smoke else args.requests
    n_stream = 20 if smoke else max(args.requests // 2, 50)
    seconds = 0.7 if smoke else args.seconds
    callers_list = [1, 16] if smoke else [1, 16, 64]
    stream_counts = [50] if smoke else [500, 1000, 2000]
    think = args.think_ms / 1000
    workdir = tempfile.mkdtemp(prefix="agent-portal-bench-")
    processes = []
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": smoke,
              "machine": machine(), "think_ms": args.think_ms, "targets": {}}
    try:
        upstream_port = free_port()
        processes.append(start_upstream(upstream_port))
        targets = [Target("direct", upstream_port, "/v1/chat/completions", {}, "echo")]
        portal_port = free_port()
        portal, token, ready_s, worker = start_portal(portal_port, upstream_port, workdir, "shipped")
        processes.append(portal)
        idle_pss = pss_kb(worker)
        targets.append(Target("portal", portal_port, "/v1/chat/completions",
                              {"Authorization": f"Bearer {token}"}, "echo"))
        if args.baseline:
            base_port = free_port()
            base, base_token, _, _ = start_portal(base_port, upstream_port, workdir, "shipped",
                                                  code=baseline_code(args.baseline, workdir))
            processes.append(base)
            targets.append(Target(f"portal@{args.baseline}", base_port, "/v1/chat/completions",
                                  {"Authorization": f"Bearer {base_token}"}, "echo"))
        if not smoke and not args.no_slim:
            slim_port = free_port()
            slim, slim_token, _, _ = start_portal(slim_port, upstream_port, workdir, "slim")
            processes.append(slim)
            targets.append(Target("portal-slim", slim_port, "/v1/chat/completions",
                                  {"Authorization": f"Bearer {slim_token}"}, "echo"))
        if not smoke and not args.no_litellm:
            litellm_port = free_port()
            litellm, key = start_litellm(litellm_port, upstream_port, workdir)
            if litellm is not None:
                processes.append(litellm)
                targets.append(Target("litellm", litellm_port, "/v1/chat/completions",
                                      {"Authorization": f"Bearer {key}"}, "echo"))
            else:
                print("LiteLLM not installed (scripts/setup.sh): its column is left out", flush=True)

        for target in targets:  # warm-up
            sequential(target, 10 if smoke else 200)
            sequential(target, 5 if smoke else 50, stream=True)
        report["targets"] = back_to_back(targets, n_seq, n_stream, think, rounds=2 if smoke else 10)
        for target in targets:
            measure(target, report["targets"][target.name], seconds, callers_list, smoke)
        report["sparse_gap_ms"] = args.sparse_gap_ms
        for name, figures in sparse(targets, n_seq, n_stream, think, args.sparse_gap_ms / 1000).items():
            report["targets"][name]["sparse"] = figures

        portal_figures = report["targets"]["portal"]
        portal_target = targets[1]
        portal_figures["many_streams"] = []
        for count in stream_counts:
            print(f"{count} concurrent streams through the portal ...", flush=True)
            # the fake's "long" model: 100 content chunks, a finish chunk and [DONE]
            portal_figures["many_streams"].append(many_streams(portal_target, count, worker, 102))
        before_calls = rss_kb(worker)
        calls = 500 if smoke else 10_000
        print(f"{calls} calls for the leak check ...", flush=True)
        gevent.joinall([gevent.spawn(sequential, portal_target, calls // 16) for _ in range(16)])
        portal_figures["footprint"] = {"ready_s": round(ready_s, 3), "idle_worker_pss_mb": round(idle_pss / 1024, 1),
                                       "before_calls_mb": round(before_calls / 1024, 1),
                                       "after_calls_mb": round(rss_kb(worker) / 1024, 1), "calls": calls}
        stop(processes[1:])
        del processes[1:]
        if not smoke and not args.no_scaling:
            report["scaling"] = scaling(upstream_port, workdir, [1, 2, 4], seconds, 64)
        report["added"] = added(report["targets"])
        report["ratios"] = ratios(report["targets"])
        report["goals"] = goals(report)
    finally:
        stop(processes)
    return report


def baseline_code(revision: str, workdir: str) -> str:
    """Return a folder holding the package as it was at git ``revision`` (its core and plugins),
    for :func:`start_portal` to serve beside the checkout's own."""
    folder = Path(workdir) / f"baseline-{revision}"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "core", "plugins"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "core").rename(folder / "agent_portal")
    (folder / "plugins").rename(folder / "agent_portal" / "plugins")
    return str(folder)


def stage_profile(think_ms: float) -> str:
    """Return, for the report, where a call's time goes inside the portal and what a server alone
    costs here (``bench/stages.py --floor``, run now): what remains of a latency goal not met."""
    print("a latency goal is not met: where the time goes (bench/stages.py --floor) ...", flush=True)
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "stages.py"), "--calls", "1000", "--floor",
                           "--think-ms", str(think_ms)], capture_output=True, text=True)
    found = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("{"))
    return ("\n## Where the time goes (a latency goal is not met)\n\n```\n" + found.strip() + "\n```\n"
            if done.returncode == 0 else f"\n(the stage profile failed: {done.stderr[-500:]})\n")


def machine() -> dict:
    """The CPU count and model, for the report's heading."""
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model}


def added(targets):
    direct = targets["direct"]
    out = {}
    for name, figures in targets.items():
        if name == "direct":
            continue
        out[name] = {
            "p50_ms": round(figures["sequential"]["p50_ms"] - direct["sequential"]["p50_ms"], 3),
            "p99_ms": round(figures["sequential"]["p99_ms"] - direct["sequential"]["p99_ms"], 3),
            "ttft_p50_ms": round(figures["streamed"]["ttft_p50_ms"] - direct["streamed"]["ttft_p50_ms"], 3),
            "ttft_p99_ms": round(figures["streamed"]["ttft_p99_ms"] - direct["streamed"]["ttft_p99_ms"], 3),
            "sparse": {key: round(figures["sparse"][key] - direct["sparse"][key], 3)
                       for key in ("p50_ms", "p99_ms", "ttft_p50_ms", "ttft_p99_ms")},
        }
    return out


def ratios(targets):
    """Return portal/direct and portal/LiteLLM for every figure measured on both."""
    out = {}
    portal = targets["portal"]
    figures = {"sequential_p50": ("sequential", "p50_ms"), "sequential_p99": ("sequential", "p99_ms"),
               "ttft_p50": ("streamed", "ttft_p50_ms"), "ttft_p99": ("streamed", "ttft_p99_ms"),
               "total_200_chunks_p50": ("streamed", "total_200_chunks_p50_ms")}
    for other in ("direct", "litellm"):
        if other not in targets:
            continue
        theirs = targets[other]
        ratio = {name: round(portal[group][key] / theirs[group][key], 2) for name, (group, key) in figures.items()}
        ratio["throughput"] = {str(p["callers"]): round(p["requests_per_s"] / t["requests_per_s"], 2)
                               for p, t in zip(portal["throughput"], theirs["throughput"])}
        ratio["throughput_p99"] = {str(p["callers"]): round(p["p99_ms"] / t["p99_ms"], 2)
                                   for p, t in zip(portal["throughput"], theirs["throughput"])}
        out[f"portal/{other}"] = ratio
    return out


def goals(report) -> list:
    """Return each of the shipped portal's goals with what this run measured and whether it is met."""
    added_ = report["added"]["portal"]
    portal = report["targets"]["portal"]
    rows = []
    for regime, figures in (("back-to-back", added_), ("sparse", added_["sparse"])):
        rows += [(f"added p50, non-streamed, {regime}", "< 0.5 ms", figures["p50_ms"], figures["p50_ms"] < 0.5),
                 (f"added p99, non-streamed, {regime}", "< 1.5 ms", figures["p99_ms"], figures["p99_ms"] < 1.5),
                 (f"added first chunk p50, {regime}", "< 0.5 ms", figures["ttft_p50_ms"],
                  figures["ttft_p50_ms"] < 0.5)]
    over_litellm = report["ratios"].get("portal/litellm", {}).get("throughput", {})
    for callers, ratio in over_litellm.items():
        rows.append((f"requests/s over LiteLLM's, {callers} callers", ">= 15x", ratio, ratio >= 15))
    pss = portal["footprint"]["idle_worker_pss_mb"]
    rows.append(("idle worker PSS", "< 80 MB", pss, pss < 80))
    for s in portal["many_streams"]:
        lost = s["chunks_lost"] + s["failed"]
        rows.append((f"{s['streams']} concurrent streams, chunks lost", "0", lost, lost == 0))
    return [{"goal": g, "target": t, "measured": m, "met": bool(ok)} for g, t, m, ok in rows]


def markdown(report) -> str:
    names = list(report["targets"])
    t = report["targets"]
    cpu = report["machine"]
    lines = [f"# Agent Portal benchmark ({report['when']}{', smoke' if report['smoke'] else ''})", "",
             f"{cpu['cpus']} CPUs ({cpu['cpu'] or 'unknown'}), loopback, one run. Upstream: the tests' fake "
             f"under gevent. `portal` is the shipped config (config/portal.example.yaml through the litellm "
             f"backend, INFO logs, default plugins), `portal-slim` an openai_compat upstream with WARNING logs "
             f"and chat's plugins only. One gevent worker each. The load generator is one gevent process on the "
             f"same machine. Two regimes: **back-to-back**, one target's calls in a row with {report['think_ms']} ms "
             f"between them (in blocks taken in turn, so that no target gets a quieter minute); **sparse**, every "
             f"target called in turn, so that each sees a call every {report['sparse_gap_ms']:g} ms or more (as a "
             f"gateway sees one user among others).", "",
             "| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label, getter):
        lines.append(f"| {label} | " + " | ".join(str(getter(t[n])) for n in names) + " |")

    row("back-to-back p50 ms", lambda f: f["sequential"]["p50_ms"])
    row("back-to-back p99 ms", lambda f: f["sequential"]["p99_ms"])
    row("back-to-back first chunk p50 ms", lambda f: f["streamed"]["ttft_p50_ms"])
    row("back-to-back first chunk p99 ms", lambda f: f["streamed"]["ttft_p99_ms"])
    row("sparse p50 ms", lambda f: f["sparse"]["p50_ms"])
    row("sparse p99 ms", lambda f: f["sparse"]["p99_ms"])
    row("sparse first chunk p50 ms", lambda f: f["sparse"]["ttft_p50_ms"])
    row("sparse first chunk p99 ms", lambda f: f["sparse"]["ttft_p99_ms"])
    row("200-chunk answer p50 ms", lambda f: f["streamed"]["total_200_chunks_p50_ms"])
    for i, point in enumerate(t["portal"]["throughput"]):
        row(f"req/s at {point['callers']} callers", lambda f, i=i: f["throughput"][i]["requests_per_s"])
        row(f"p99 ms at {point['callers']} callers", lambda f, i=i: f["throughput"][i]["p99_ms"])
    lines += ["", "## Added over direct", "",
              "| gateway | regime | p50 ms | p99 ms | first chunk p50 ms | first chunk p99 ms |", "|---|---|---|---|---|---|"]
    for name, a in report["added"].items():
        for regime, f in (("back-to-back", a), ("sparse", a["sparse"])):
            lines.append(f"| {name} | {regime} | {f['p50_ms']} | {f['p99_ms']} | {f['ttft_p50_ms']} | {f['ttft_p99_ms']} |")
    lines += ["", "## Goals (shipped config)", "", "| goal | target | measured | met |", "|---|---|---|---|"]
    for g in report["goals"]:
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {'yes' if g['met'] else 'NO'} |")
    lines += ["", "## Many streams through the portal (one gevent worker)", "",
              "| streams | failed | chunks lost | p99 gap ms | memory per stream KB |", "|---|---|---|---|---|"]
    for s in t["portal"]["many_streams"]:
        why = ", ".join(f"{n} {reason}" for reason, n in s.get("why", {}).items())
        lines.append(f"| {s['streams']} | {s['failed']}{f' ({why})' if why else ''} | {s['chunks_lost']} | "
                     f"{s['p99_gap_ms']} | {s['memory_per_stream_kb']} |")
    if report.get("scaling"):
        lines += ["", "## Workers (shipped config, 64 callers)", "", "| workers | req/s | p50 ms | p99 ms | errors |",
                  "|---|---|---|---|---|"]
        for point in report["scaling"]:
            lines.append(f"| {point['workers']} | {point['requests_per_s']} | {point['p50_ms']} | {point['p99_ms']} | "
                         f"{point['errors']} |")
    f = t["portal"]["footprint"]
    lines += ["", "## Footprint", "", f"- start to /ready: {f['ready_s']} s",
              f"- idle worker: {f['idle_worker_pss_mb']} MB PSS",
              f"- RSS before / after {f['calls']} calls: {f['before_calls_mb']} / {f['after_calls_mb']} MB", "",
              "## Ratios", "", "```", json.dumps(report["ratios"], indent=2), "```", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds, no LiteLLM")
    parser.add_argument("--requests", type=int, default=1000, help="sequential requests per target")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput point")
    parser.add_argument("--think-ms", type=float, default=2.0, help="pause between sequential calls")
    parser.add_argument("--sparse-gap-ms", type=float, default=10.0,
                        help="in the sparse regime, the least time between two calls to one target")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-slim", action="store_true", help="leave out the slim variant")
    parser.add_argument("--no-scaling", action="store_true", help="leave out the 1/2/4-worker runs")
    parser.add_argument("--baseline", metavar="REVISION",
                        help="also serve the portal's code as it was at this git revision (same config), "
                             "measured beside the checkout's in the same run")
    parser.add_argument("--no-profile", action="store_true",
                        help="leave out the stage profile printed when a latency goal is not met")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    latency_unmet = any(not g["met"] and "added" in g["goal"] for g in report["goals"])
    if latency_unmet and not args.smoke and not args.no_profile:
        text += stage_profile(args.think_ms)
    (out / "report.md").write_text(text)
    print(text)
    lost = sum(s["chunks_lost"] + s["failed"] for s in report["targets"]["portal"]["many_streams"])
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
