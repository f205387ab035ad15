"""Failover suite: failoverbench's sixteen fault scenarios, run against the portal through each
chat backend and against a LiteLLM proxy alone, side by side in one run.

    python bench/failover_suite.py                 # full profile (failoverbench's timings, ~12 min)
    python bench/failover_suite.py --scale 0.2     # the same scenarios with every delay x0.2
    python bench/failover_suite.py --systems portal-openai_compat --only S08,S14

The scenarios, checks and verdicts follow failoverbench's published catalogue and methodology
(github.com/failoverbench/failoverbench, methodology v0.1); the wall (bench/failover_wall.py), the
runner and the scoring here are the project's own. Every system gets the methodology's baseline:
up to two retries, a 30 s first-token and stream-idle timeout, one fallback. Prints a table of
verdicts and writes ``report.json`` and ``report.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failover_caller import call  # noqa: E402
from failover_systems import SYSTEMS, start_system  # noqa: E402
from failover_wall import CANONICAL, FAULTS, Timing, Wall  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ADVISORY, REQUIRED = "advisory", "required"


def check(id_, kind, value=None, severity=REQUIRED, window=None, scaled=False, informational=False):
    return {"id": id_, "kind": kind, "value": value, "severity": severity, "window": window,
            "scaled": scaled, "informational": informational}


# the catalogue, methodology v0.1: (id, title, model, max_wall_s, checks[, fallback, ideal])
SCENARIOS = [
    ("S01", "429 with Retry-After", "fb-s01-429-retry-after", 20, [
        check("retried", "attempts_primary_min", 2, ADVISORY),
        check("retry_after_honoured", "first_gap_min_s", 1.8, ADVISORY),
        check("no_hammer", "max_attempts_within", 2, window=1.5)]),
    ("S02", "429 without Retry-After, persistent", "fb-s02-429-persistent", 40, [
        check("no_hammer", "max_attempts_within", 4, window=3),
        check("bounded_attempts", "attempts_primary_max", 6), check("no_hang", "no_hang")]),
    ("S03", "500 once, then healthy", "fb-s03-500-then-200", 20, [
        check("no_hang", "no_hang"), check("same_provider_retry", "attempts_primary_min", 2, ADVISORY)]),
    ("S04", "503 persistent", "fb-s04-503-persistent", 40, [
        check("bounded_attempts", "attempts_primary_max", 6), check("no_hang", "no_hang")]),
    ("S05", "TCP reset before headers", "fb-s05-reset", 20, [check("no_hang", "no_hang")]),
    ("S06", "No response at all", "fb-s06-no-response", 130, [
        check("within_budget", "wall_max_s", 100, scaled=True), check("no_hang", "no_hang"),
        check("silent_route_not_retried", "attempts_primary_max", 1, ADVISORY)]),
    ("S07", "Slow first token", "fb-s07-slow-ttft", 60, [
        check("no_hang", "no_hang"), check("ttft_limit", "wall_max_s", 15, ADVISORY, scaled=True)]),
    ("S08", "Stream cut mid-answer", "fb-s08-stream-cut", 40, [
        check("no_truncated_success", "no_truncated_success"), check("no_hang", "no_hang")]),
    ("S09", "Stream stalls", "fb-s09-stream-stall", 70, [
        check("bounded", "wall_max_s", 45, scaled=True), check("no_truncated_success", "no_truncated_success"),
        check("alive_after", "alive_after"), check("no_hang", "no_hang")]),
    ("S10", "Malformed chunk in the stream", "fb-s10-malformed-chunk", 30, [
        check("alive_after", "alive_after"), check("no_garbage", "no_truncated_success"),
        check("no_hang", "no_hang"), check("recovered_in_place", "complete", severity=ADVISORY)]),
    ("S11", "Stream ends without [DONE]", "fb-s11-no-done", 30, [
        check("prompt_finalise", "wall_max_s", 8), check("usage_reported", "usage_present", severity=ADVISORY)]),
    ("S12", "Context length exceeded", "fb-s12-context-length", 20, [
        check("no_same_model_retry", "attempts_primary_eq", 1), check("no_hang", "no_hang")]),
    ("S13", "Content-filter rejection", "fb-s13-content-filter", 20, [
        check("no_same_model_retry", "attempts_primary_eq", 1), check("no_hang", "no_hang"),
        check("fallback_attempted", "fallback_used", severity=ADVISORY, informational=True)], "fb-ok", "error"),
    ("S14", "Fallback target rejects prefill", "fb-s14-stream-cut", 40, [
        check("no_prefill_masking", "no_prefill_masking"),
        check("no_truncated_success", "no_truncated_success")], "fb-ok-noprefill"),
    ("S15", "Primary flaps: down, then healthy", "fb-s15-flap", 200, [
        check("no_hang", "seq_no_hang"), check("served_during_outage", "seq_served_during_outage"),
        check("recovered", "seq_recovered_within_s", 30, scaled=True)]),
    ("S16", "Fail-over accounting", "fb-s16-503-persistent", 40, [
        check("reports_fallback_model", "reported_model_is_fallback"),
        check("usage_present", "usage_present", severity=ADVISORY),
        check("bounded_attempts", "attempts_primary_max", 6)]),
]
assert {s[2] for s in SCENARIOS} == set(FAULTS)


def normal(text: str) -> str:
    return " ".join(text.split())


# --- checks ------------------------------------------------------------------------------------
def judge(c, result, primary, fallback, fallback_model, scale, alive, seq=None, timing=None) -> bool:
    """Return whether check ``c`` holds for one scenario's result and the wall's attempt log."""
    kind, value = c["kind"], c["value"]
    if c["scaled"] and value is not None:
        value = value * scale
    complete = result.get("outcome") == "success" and normal(result["content"]) == normal(CANONICAL)
    if kind == "no_hang":
        return result["outcome"] != "hang"
    if kind == "complete":
        return complete
    if kind == "no_truncated_success":
        return not (result["outcome"] == "success" and not complete)
    if kind == "attempts_primary_min":
        return len(primary) >= value
    if kind == "attempts_primary_max":
        return len(primary) <= value
    if kind == "attempts_primary_eq":
        return len(primary) == value
    if kind == "first_gap_min_s":
        return len(primary) >= 2 and primary[1]["at"] - primary[0]["at"] >= value
    if kind == "max_attempts_within":
        return not primary or sum(a["at"] - primary[0]["at"] <= c["window"] for a in primary) <= value
    if kind == "wall_max_s":
        return result["outcome"] != "hang" and result["seconds"] <= value
    if kind == "alive_after":
        return alive
    if kind == "fallback_used":
        return bool(fallback)
    if kind == "reported_model_is_fallback":
        return fallback_name_in(result.get("model") or "", fallback_model)
    if kind == "usage_present":
        return result.get("usage") is not None
    if kind == "no_prefill_masking":
        return not (result["outcome"] == "error" and any(a["refused_prefill"] for a in fallback))
    if kind == "seq_no_hang":
        return all(r["outcome"] != "hang" for r in seq)
    if kind == "seq_served_during_outage":
        during = [r for r in seq if r["sent_at"] < timing.outage]
        return bool(during) and all(normal(r.get("content", "")) == normal(CANONICAL) for r in during)
    if kind == "seq_recovered_within_s":
        after = [a["at"] for a in primary if a["at"] >= timing.outage]
        return bool(after) and min(after) - timing.outage <= value
    raise ValueError(kind)


def fallback_name_in(reported: str, fallback: str) -> bool:
    return reported.rsplit("/", 1)[-1] == fallback


def verdict(scenario, results) -> str:
    """pass, partial, safe or fail, as the methodology scores a cell."""
    ideal = scenario["ideal"]
    outcome = scenario["result"]["outcome"]
    rescued = (scenario["complete"] if ideal == "success" else outcome == "error")
    failed = {c["id"] for c, ok in results if not ok and not c["informational"]}
    required = {c["id"] for c, ok in results if not ok and c["severity"] == REQUIRED and not c["informational"]}
    truncated = outcome == "success" and not scenario["complete"]
    if outcome == "hang" or truncated or required:
        return "fail"
    if ideal == "error" and outcome == "success":
        return "partial"  # answered by routing around the rejection
    if rescued:
        return "partial" if failed else "pass"
    return "safe" if outcome == "error" else "fail"


# --- running -----------------------------------------------------------------------------------
def run_scenario(system, wall, spec, scale):
    sid, title, model, max_wall, checks = spec[:5]
    fallback_model = spec[5] if len(spec) > 5 else "fb-ok"
    ideal = spec[6] if len(spec) > 6 else "success"
    timing = wall.timing
    max_wall = max(max_wall * scale, 10)
    wall.reset()
    seq = None
    if sid == "S15":
        seq = sequence(system, model, timing, scale)
        result = seq[-1]
    else:
        result = call(system, model, max_wall)
    time.sleep(0.2)  # the wall's log settles (a retry the system sent as the caller gave up)
    primary, fallback = wall.log(model), wall.log(fallback_model)
    alive = call(system, "fb-ok", 10)
    results = [(c, judge(c, result, primary, fallback, fallback_model, scale, alive["outcome"] == "success", seq,
                         timing))
               for c in checks]
    complete = result["outcome"] == "success" and normal(result["content"]) == normal(CANONICAL)
    cell = {"id": sid, "title": title, "ideal": ideal, "result": {k: v for k, v in result.items() if k != "content"},
            "complete": complete, "attempts": {"primary": len(primary), "fallback": len(fallback),
                                               "prefill_refused": sum(a["refused_prefill"] for a in fallback)},
            "checks": {c["id"]: ok for c, ok in results},
            "informational": [c["id"] for c in checks if c["informational"]]}
    cell["verdict"] = verdict(cell, results)
    return cell


def sequence(system, model, timing, scale):
    """S15: twenty calls, one every 4 s (scaled), across the primary's outage."""
    count, interval, per_call = 20, 4 * scale, max(30 * scale, 5)
    results, threads = [None] * count, []
    started = time.monotonic()
    for i in range(count):
        delay = started + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)

        def one(i=i):
            sent_at = time.monotonic() - started
            results[i] = {**call(system, model, per_call), "sent_at": sent_at}

        thread = threading.Thread(target=one)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return results


def run(args) -> dict:
    timing = Timing(args.scale)
    wall = Wall(timing).start()
    workdir = tempfile.mkdtemp(prefix="agent-portal-failover-")
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "scale": args.scale, "systems": {}}
    only = set(args.only.split(",")) if args.only else None
    try:
        for name in args.systems.split(","):
            system = start_system(name, wall, workdir, args.scale)
            if system is None:
                print(f"{name}: not available here (scripts/setup.sh installs LiteLLM); left out", flush=True)
                continue
            try:
                cells = []
                for spec in SCENARIOS:
                    if only and spec[0] not in only:
                        continue
                    cell = run_scenario(system, wall, spec, args.scale)
                    print(f"{name} {cell['id']} {cell['verdict']:<8} {cell['result']['outcome']} "
                          f"{cell['result']['seconds']:.1f}s primary={cell['attempts']['primary']} "
                          f"fallback={cell['attempts']['fallback']} "
                          f"{cell['result'].get('error') or ''}", flush=True)
                    cells.append(cell)
                report["systems"][name] = cells
            finally:
                system.stop()
    finally:
        wall.stop()
    return report


def tally(cells) -> str:
    counts = [sum(c["verdict"] == v for c in cells) for v in ("pass", "partial", "safe", "fail")]
    return " / ".join(map(str, counts))


def markdown(report) -> str:
    names = list(report["systems"])
    lines = [f"# Failover suite ({report['when']}, delays x{report['scale']})", "",
             "| scenario | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    by_system = {n: {c["id"]: c for c in cells} for n, cells in report["systems"].items()}
    for sid, title in ((s[0], s[1]) for s in SCENARIOS):
        if not any(sid in by_system[n] for n in names):
            continue
        cells = [by_system[n].get(sid) for n in names]
        lines.append(f"| {sid} {title} | " + " | ".join(
            "—" if c is None else c["verdict"] + "".join(
                f" ({k})" for k, ok in c["checks"].items() if not ok and k not in c["informational"])
            for c in cells) + " |")
    lines.append("| **pass / partial / safe / fail** | " + " | ".join(
        tally(report["systems"][n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated: " + ", ".join(SYSTEMS))
    parser.add_argument("--only", default="", help="comma-separated scenario ids (S01,...)")
    parser.add_argument("--scale", type=float, default=1.0, help="every wall delay and timeout times this")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "failover"))
    args = parser.parse_args()
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (out / "report.md").write_text(text)
    print(text)
    portal = [c for n, cells in report["systems"].items() if n.startswith("portal") for c in cells]
    return 1 if any(c["verdict"] == "fail" for c in portal) else 0


if __name__ == "__main__":
    sys.exit(main())
