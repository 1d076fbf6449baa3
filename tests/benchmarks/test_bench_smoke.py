"""Smoke run of ``meterwax bench`` on the session's broker and Redis: small, but end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_TIMEOUT_S = 120.0


@pytest.mark.integration
def test_bench_smoke_matches_ground_truth(
    tmp_path: Path, kafka_brokers: str, redis_url: str
) -> None:
    out = tmp_path / "report"
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "cli.main", "bench"),
            *("--events", "20000", "--tenants", "50", "--partitions", "3", "--out", str(out)),
            *("--brokers", kafka_brokers, "--redis-url", redis_url),
        ],
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        cwd=tmp_path,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "ground truth PASSED" in completed.stdout

    report = json.loads((out / "report.json").read_text())
    truth = json.loads((out / "truth.json").read_text())
    assert report["checks"]["passed"] is True
    assert report["checks"]["failures"] == []
    # Every tenant/meter quantity was compared, and reconcile looked at windows.
    assert report["checks"]["compared"] == sum(len(m) for m in truth["usage"].values())
    assert report["checks"]["reconcile_windows"] > 0
    assert report["raw_ceiling"]["events"] == truth["messages"]
    assert report["flow"]["events"] == truth["messages"]
    assert report["raw_ceiling"]["events_per_s"] > 0
    assert report["flow"]["events_per_s"] > 0
    assert report["ratio"] == pytest.approx(
        report["flow"]["events_per_s"] / report["raw_ceiling"]["events_per_s"]
    )
    assert report["flow"]["peak_rss_bytes"] > 0
    assert (out / "report.md").read_text().count("events/s") >= 2
    assert (out / "chart.png").read_bytes().startswith(b"\x89PNG")
