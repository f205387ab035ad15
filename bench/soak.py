"""A bounded soak of the ledger under sustained load: a database outage, a graceful reload, and an
exact count of what was stored.

    .venv/bin/python bench/soak.py --duration 60 --outage 15:30 --reload 40 [--clients 8]
    .venv/bin/python bench/soak.py --duration 600 --outage 120:420 --reload 450   # by hand: 10 min

Everything on 127.0.0.1: the tests' fake upstream (gevent), PostgreSQL behind a TCP proxy that is
cut for the outage, the portal under gunicorn (two gevent workers, ledger in PostgreSQL, journal
on), and keep-alive clients that each send a unique ``X-Request-ID``. Afterwards every answered
request id must be in the ledger exactly once. Prints a JSON report (``--out`` writes it too).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from loadgen import Connection, chat_body  # noqa: E402
from procs import free_port, start_upstream, wait_http  # noqa: E402
from tcp_proxy import CuttableProxy  # noqa: E402

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in subprocess.check_output(["pgrep", "-P", str(pid)]).split()]
    except subprocess.CalledProcessError:
        return []


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def ledger_metrics(base: str, token: str) -> dict:
    wanted = ("portal_ledger_queue_depth", "portal_ledger_journal_records",
              "portal_ledger_oldest_unwritten_seconds", "portal_ledger_dropped_records")
    try:
        text = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5).text
    except requests.RequestException:
        return {}
    out = {}
    for line in text.splitlines():
        name = line.split(" ", 1)[0].split("{", 1)[0]
        if name in wanted:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1]) if name != \
                "portal_ledger_oldest_unwritten_seconds" else max(out.get(name, 0.0), float(line.rsplit(" ", 1)[1]))
    return out


def ledger_health(base: str, token: str) -> str | None:
    try:
        answer = requests.get(base + "/observability/health", headers={"Authorization": f"Bearer {token}"},
                              timeout=5).json()
        return answer["components"]["ledger"]["status"]
    except (requests.RequestException, ValueError, KeyError):
        return None


def start_portal(workdir: Path, upstream_port: int, database_url: str, scrape: str, port: int):
    config = {
        "portal": {"secret_key": secrets.token_urlsafe(32), "database_url": database_url, "log_level": "WARNING"},
        "plugins": {
            "chat": {}, "portal_tokens": {}, "observability": {"health_cache_seconds": 0.5},
            "metrics": {"scrape_token": scrape},
            "ledger": {"journal_dir": str(workdir / "journal"), "age_warning_seconds": 30},
            "openai_compat": {"upstreams": {"fake": {"base_url": f"http://127.0.0.1:{upstream_port}/v1",
                                                     "models": ["echo"]}}},
        },
    }
    path = workdir / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PORTAL_GRACEFUL_SECONDS": "10"}
    log = open(workdir / "portal.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "agent_portal.cli", "serve", "--config", str(path),
                                "--port", str(port), "--workers", "2"], env=env, stdout=log, stderr=log)
    wait_http(f"http://127.0.0.1:{port}/ready", 30, process)
    from agent_portal import create_app, portal_of
    from agent_portal.plugins.portal_tokens import mint_token

    portal = portal_of(create_app(str(path)))
    return process, mint_token(portal, "soak", "user", 7200), mint_token(portal, "soak-admin", "admin", 7200)


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="agent-portal-soak-"))
    schema = f"soak_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    proxy = CuttableProxy()
    database_url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}") + f"?options=-csearch_path%3D{schema}"
    upstream_port, port = free_port(), free_port()
    upstream = start_upstream(upstream_port)
    scrape = secrets.token_urlsafe(24)
    portal, token, admin_token = start_portal(workdir, upstream_port, database_url, scrape, port)
    base = f"http://127.0.0.1:{port}"
    answered: list[str] = []
    failed = [0]
    samples = []
    outage = tuple(float(x) for x in args.outage.split(":")) if args.outage else None
    stop_at = time.monotonic() + args.duration
    started = time.monotonic()
    body = chat_body("echo", False, 3)

    def client():
        connection = Connection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            request_id = uuid.uuid4().hex
            try:
                status, _ = connection.post("/v1/chat/completions", body, {
                    "Authorization": f"Bearer {token}", "X-Request-ID": request_id})
            except (OSError, ConnectionError):
                connection.close()
                failed[0] += 1
                gevent.sleep(0.05)
                continue
            if status == 200:
                answered.append(request_id)
            else:
                failed[0] += 1
            if args.think_ms:
                gevent.sleep(args.think_ms / 1000)

    def sampler():
        while True:
            now = time.monotonic() - started
            workers = children(portal.pid)
            samples.append({"t": round(now, 1), "answered": len(answered),
                            "rss_mb": [round(rss_mb(w), 1) for w in workers], **ledger_metrics(base, scrape),
                            "ledger_health": ledger_health(base, admin_token)})
            gevent.sleep(1.0)

    def events():
        if outage:
            gevent.sleep(outage[0])
            proxy.cut()
            gevent.sleep(outage[1] - outage[0])
            proxy.restore()
        if args.reload is not None:
            gevent.sleep(max(0.0, args.reload - (time.monotonic() - started)))
            portal.send_signal(signal.SIGHUP)

    sampling = gevent.spawn(sampler)
    happenings = gevent.spawn(events)
    gevent.joinall([gevent.spawn(client) for _ in range(args.clients)])
    load_seconds = time.monotonic() - started
    happenings.kill()
    proxy.restore()

    # the backlog must reach 0; wait for it (bounded) with the load over
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    table = f"{schema}.portal_chat_calls"
    deadline = time.monotonic() + args.drain_seconds
    stored = 0
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            stored = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
        if stored >= len(answered):
            break
        time.sleep(0.5)
    drained_after = time.monotonic() - started - load_seconds
    gevent.sleep(1.5)
    sampling.kill()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT request_id, count(*) FROM {table} GROUP BY request_id")).all()
    counts = {r[0]: r[1] for r in rows}
    lost = sum(1 for rid in answered if rid not in counts)
    duplicated = sum(1 for n in counts.values() if n > 1)
    unexpected = len(set(counts) - set(answered))

    portal.send_signal(signal.SIGTERM)
    portal.wait(30)
    upstream.terminate()
    proxy.close()
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
    admin.dispose()
    log_text = (workdir / "portal.log").read_text()
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    during = [s for s in samples if outage and outage[0] + 2 <= s["t"] <= outage[1]]
    report = {
        "duration_s": round(load_seconds, 1), "clients": args.clients, "answered": len(answered),
        "failed": failed[0], "stored": len(counts), "lost": lost, "duplicated": duplicated,
        "unexpected": unexpected, "calls_per_s": round(len(answered) / load_seconds, 1),
        "drained_s_after_load": round(drained_after, 1),
        "backlog_seen_during_outage": max((s.get("portal_ledger_queue_depth", 0)
                                           + s.get("portal_ledger_journal_records", 0) for s in during), default=0),
        "backlog_at_end_of_load": next((s.get("portal_ledger_queue_depth", 0) + s.get("portal_ledger_journal_records", 0)
                                        for s in reversed(samples) if s["t"] <= load_seconds), None),
        "db_failure_warnings": log_text.count("database write failed"),
        "samples_without_health": sum(1 for s in samples if s.get("ledger_health") is None),
        "portal_log_tail": log_text[-3000:],
        "samples": samples,
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--outage", default="15:30", help="start:end seconds of the database cut ('' for none)")
    parser.add_argument("--reload", type=float, default=40, help="seconds in: SIGHUP the master")
    parser.add_argument("--think-ms", type=float, default=0)
    parser.add_argument("--drain-seconds", type=float, default=60)
    parser.add_argument("--out")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the portal's log)")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    summary = {k: v for k, v in report.items() if k not in ("samples", "portal_log_tail")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
