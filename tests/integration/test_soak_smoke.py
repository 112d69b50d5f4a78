"""``python -m bench --soak 2`` runs end to end (embedded) and writes its JSON and plot.

Asserts that every series was sampled, that the retention purge deleted rows during the run, and that no
request of the mix failed. No timing and no flatness: two minutes are too short for a steady state (the
verdict of a real run is read by people, docs/soak.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

pytestmark = [pytest.mark.slow]


def test_soak_smoke_writes_samples_and_purges(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp", reason="the bench needs the test extra (aiohttp, matplotlib, psutil)")
    pytest.importorskip("matplotlib", reason="the bench needs the test extra (aiohttp, matplotlib, psutil)")
    run = subprocess.run([sys.executable, "-m", "bench", "--soak", "2", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-6000:]

    found = list(tmp_path.glob("*-2min.json"))
    assert len(found) == 1, list(tmp_path.iterdir())
    assert found[0].with_suffix(".png").stat().st_size > 0
    results = json.loads(found[0].read_text())
    assert "errors" not in results, results.get("errors")
    soak = results["runs"]["embedded"]
    assert soak["error_count"] == 0 and soak["errors"] == []
    assert soak["env"]["HIEM_PURGE_INTERVAL"] == "5"

    samples = soak["samples"]
    assert len(samples) >= 6, "a sample every 10 s for 2 minutes"
    for sample in samples:
        assert sample["db"]["bytes"] > 0
        assert sample["db"]["table_bytes"]["deliveries"] > 0
        assert {"notifications", "deliveries", "audit_records", "subscriptions", "security_nonces",
                "purge_totals"} <= sample["rows"].keys()
        assert sample["rss_mb"]["web"] > 0
        assert sample["notify"]["count"] > 0 and sample["notify"]["p50_ms"] is not None
        assert sample["notify"]["p99_ms"] is not None
        assert sample["lag"]["delivered"] > 0 and sample["lag"]["p50_ms"] is not None
    load = soak["load"]
    for stream in ("notify_small", "notify_large", "notify_churn", "churn_subscribed", "churn_unsubscribed",
                   "get_messages", "pulled_messages"):
        assert load.get(stream, 0) > 0, (stream, load)
    answers = soak["consumer_answers"]
    assert answers["flaky"].get("503", 0) > 0 and answers["fault"].get("500", 0) > 0, answers

    # the purge ran: what it deleted is counted in purge_totals (what /metrics reports as hiem_purged_rows_total)
    final = samples[-1]
    assert final["rows"]["purge_totals"] > 0 and final["purged_total"] > 0, final["purged"]
    assert final["purged"].get("deliveries:delivered", 0) > 0, final["purged"]
    assert any(kind.startswith("notifications:") and rows > 0 for kind, rows in final["purged"].items()), \
        final["purged"]

    verdict = soak["verdict"]
    assert verdict["flat"] in (True, False) and "db_bytes" in verdict["middle_vs_last"]
    assert "rss_mb.web" in verdict["checked"]
