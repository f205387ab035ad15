"""A bounded soak (about a minute): two gevent workers under steady load, PostgreSQL cut for part
of it, a graceful reload, then every answered call found in the ledger exactly once."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, need_service

pytestmark = [pytest.mark.integration, pytest.mark.soak]
LOAD, OUTAGE, RELOAD = 50, (8, 20), 38


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    need_service("PostgreSQL", "127.0.0.1", 5432)
    out = tmp_path_factory.mktemp("soak") / "report.json"
    subprocess.run([sys.executable, str(ROOT / "bench/soak.py"), "--duration", str(LOAD),
                    "--outage", f"{OUTAGE[0]}:{OUTAGE[1]}", "--reload", str(RELOAD), "--clients", "8",
                    "--out", str(out)], check=True, timeout=240, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def test_soak_loses_and_duplicates_no_record_across_an_outage_and_a_reload(soak):
    assert soak["answered"] > 5000 and soak["failed"] == 0
    assert (soak["lost"], soak["duplicated"], soak["unexpected"]) == (0, 0, 0)
    assert soak["stored"] == soak["answered"]


def test_soak_backlog_drains_while_the_load_continues(soak):
    after = [s for s in soak["samples"] if OUTAGE[1] + 2 <= s["t"] <= LOAD]
    backlog = [s.get("portal_ledger_queue_depth", 0) + s.get("portal_ledger_journal_records", 0) for s in after]
    assert after and min(backlog) < 1000, backlog


def test_soak_metrics_and_health_report_the_backlog_during_the_outage(soak):
    during = [s for s in soak["samples"] if OUTAGE[0] + 3 <= s["t"] <= OUTAGE[1] - 1]
    served = during[-1]["answered"] - during[0]["answered"]
    backlog = [s.get("portal_ledger_queue_depth", 0) + s.get("portal_ledger_journal_records", 0) for s in during]
    assert backlog[-1] - backlog[0] >= 0.5 * served  # the figures move with the backlog
    assert "degraded" in {s["ledger_health"] for s in during}, soak["portal_log_tail"]
    assert "down" not in {s["ledger_health"] for s in soak["samples"]}


def test_soak_backs_off_instead_of_storming_the_database(soak):
    assert soak["db_failure_warnings"] <= 2 * 2 * ((OUTAGE[1] - OUTAGE[0]) // 10 + 1)


def test_soak_memory_stays_flat_after_the_drain(soak):
    assert max(max(s["rss_mb"] or [0]) for s in soak["samples"]) < 160
    # the workers that lived through the outage, from when the journal drained to the reload
    drained = [s for s in soak["samples"] if OUTAGE[1] + 6 <= s["t"] <= RELOAD - 1]
    busiest = [max(s["rss_mb"]) for s in drained if s["rss_mb"]]
    assert busiest and busiest[-1] - busiest[0] < 10, (busiest, soak["portal_log_tail"])
