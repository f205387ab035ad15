"""Limits and budgets while their store goes away: Redis cut, then back empty (a restart), under load.

    .venv/bin/python bench/limits_chaos.py --duration 40 --outage 10:20 [--mode open] [--users 4]

Everything on 127.0.0.1: the tests' fake upstream, the portal under gunicorn (two gevent
workers, ledger in PostgreSQL, counters in Redis behind a TCP proxy that is cut for the outage
and whose database is flushed before it comes back), and one keep-alive client per user calling
a priced model (``slow-20``, $0.017 a call) against a daily budget. Afterwards, per user: what
the ledger holds against the budget, the lowest ``spent_usd`` the limits view showed (never
below zero), how many calls were admitted during the outage, and how many warning lines the
outage cost. Prints a JSON report.
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
import redis  # noqa: E402
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
REDIS_DB = 14  # the tests use 15
CALL_COST = 7 * 0.001 + 5 * 0.002


def start_portal(workdir: Path, upstream_port: int, database_url: str, redis_url: str, port: int, args):
    config = {
        "portal": {"secret_key": secrets.token_urlsafe(32), "database_url": database_url, "log_level": "WARNING",
                   "redis_url": redis_url},
        "plugins": {
            "chat": {"models": {"metered": {"backend": "fake", "model": "slow-20", "input_cost_per_token": 0.001,
                                            "output_cost_per_token": 0.002}}},
            "portal_tokens": {}, "observability": {"health_cache_seconds": 0.5},
            "ledger": {"journal_dir": str(workdir / "journal")},
            "rate_limits": {"on_storage_error": args.mode,
                            "roles": {"user": {"daily_budget_usd": args.budget}}},
            "openai_compat": {"upstreams": {"fake": {"base_url": f"http://127.0.0.1:{upstream_port}/v1",
                                                     "models": ["slow-20"]}}},
        },
    }
    path = workdir / "portal.yaml"
    path.write_text(yaml.safe_dump(config))
    (workdir / "metrics").mkdir(exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"), "PORTAL_GRACEFUL_SECONDS": "5"}
    log = open(workdir / "portal.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "agent_portal.cli", "serve", "--config", str(path),
                                "--port", str(port), "--workers", "2"], env=env, stdout=log, stderr=log)
    wait_http(f"http://127.0.0.1:{port}/ready", 30, process)
    from agent_portal import create_app, portal_of
    from agent_portal.plugins.portal_tokens import mint_token

    portal = portal_of(create_app(str(path)))
    users = [f"chaos-{uuid.uuid4().hex[:6]}-{i}" for i in range(args.users)]
    tokens = {user: mint_token(portal, user, "user", 7200) for user in users}
    return process, tokens, mint_token(portal, "chaos-admin", "admin", 7200)


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="agent-portal-chaos-"))
    schema = f"chaos_{uuid.uuid4().hex[:8]}"
    admin_engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    store = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    store.flushdb()
    proxy = CuttableProxy(("127.0.0.1", 6379))
    upstream_port, port = free_port(), free_port()
    upstream = start_upstream(upstream_port)
    database_url = PG_URL + f"?options=-csearch_path%3D{schema}"
    portal, tokens, admin_token = start_portal(workdir, upstream_port, database_url,
                                               f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}", port, args)
    base = f"http://127.0.0.1:{port}"
    outage = tuple(float(x) for x in args.outage.split(":"))
    started = time.monotonic()
    stop_at = started + args.duration
    tally = {user: {"admitted": 0, "admitted_in_outage": 0, "refused_429": 0, "refused_503": 0, "other": 0,
                    "lowest_spent_usd": None} for user in tokens}
    health_seen: list[str] = []
    body = chat_body("metered", False, 5)

    def in_outage() -> bool:
        return outage[0] <= time.monotonic() - started < outage[1]

    def client(user: str):
        connection = Connection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            try:
                status, _ = connection.post("/v1/chat/completions", body, {"Authorization": f"Bearer {tokens[user]}"})
            except (OSError, ConnectionError):
                connection.close()
                tally[user]["other"] += 1
                gevent.sleep(0.05)
                continue
            if status == 200:
                tally[user]["admitted"] += 1
                tally[user]["admitted_in_outage"] += in_outage()
            elif status in (429, 503):
                tally[user][f"refused_{status}"] += 1
                gevent.sleep(0.05)
            else:
                tally[user]["other"] += 1

    def watcher():
        while True:
            for user, token in tokens.items():
                try:
                    answer = requests.get(base + "/observability/limits", timeout=5,
                                          headers={"Authorization": f"Bearer {token}"}).json()
                    spent = next(e["spent_usd"] for e in answer["limits"] if e["limit"] == "daily_budget_usd")
                except (requests.RequestException, ValueError, KeyError, StopIteration):
                    continue
                low = tally[user]["lowest_spent_usd"]
                tally[user]["lowest_spent_usd"] = spent if low is None else min(low, spent)
            try:
                health = requests.get(base + "/observability/health", timeout=5,
                                      headers={"Authorization": f"Bearer {admin_token}"}).json()
                health_seen.append(health["components"]["limits"]["status"])
            except (requests.RequestException, ValueError, KeyError):
                pass
            gevent.sleep(0.5)

    def events():
        gevent.sleep(outage[0])
        proxy.cut()
        gevent.sleep(outage[1] - outage[0])
        store.flushdb()  # Redis comes back empty, as after a restart without persistence
        proxy.restore()

    watching, happening = gevent.spawn(watcher), gevent.spawn(events)
    gevent.joinall([gevent.spawn(client, user) for user in tokens])
    load_seconds = time.monotonic() - started
    happening.kill()
    proxy.restore()
    gevent.sleep(2.0)  # the last records reach the ledger
    watching.kill()

    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        spent = dict(conn.execute(sa.text(f"SELECT actor_id, sum(cost) FROM {schema}.portal_chat_calls "
                                          "WHERE outcome = 'ok' GROUP BY actor_id")).all())
    portal.send_signal(signal.SIGTERM)
    portal.wait(30)
    upstream.terminate()
    proxy.close()
    store.flushdb()
    with admin_engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
    admin_engine.dispose()
    log_text = (workdir / "portal.log").read_text()
    shutil.rmtree(workdir, ignore_errors=True)
    per_user = {user: {**counts, "ledger_usd": round(float(spent.get(user) or 0.0), 4),
                       "over_budget_usd": round(max(0.0, float(spent.get(user) or 0.0) - args.budget), 4)}
                for user, counts in tally.items()}
    return {
        "mode": args.mode, "duration_s": round(load_seconds, 1), "outage_s": list(outage),
        "budget_usd": args.budget, "call_usd": CALL_COST, "users": len(tokens), "workers": 2,
        "most_over_budget_usd": max(u["over_budget_usd"] for u in per_user.values()),
        "most_over_budget_calls": round(max(u["over_budget_usd"] for u in per_user.values()) / CALL_COST, 2),
        "most_admitted_in_outage": max(u["admitted_in_outage"] for u in per_user.values()),
        "lowest_spent_usd_shown": min((u["lowest_spent_usd"] for u in per_user.values()
                                       if u["lowest_spent_usd"] is not None), default=None),
        "limit_store_warnings": log_text.count("rate limit store unavailable"),
        "limits_health_seen": sorted(set(health_seen)),
        "per_user": per_user,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=40)
    parser.add_argument("--outage", default="10:20", help="start:end seconds of the Redis cut")
    parser.add_argument("--mode", choices=["open", "closed"], default="open")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--budget", type=float, default=1.5, help="each user's daily budget, USD")
    parser.add_argument("--out")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
