"""Smoke run of ``meterwax bench`` on the session's broker and Redis: small, but end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_TIMEOUT_S = 180.0
STAGES = ("parse", "screen", "claim", "fold", "finish", "rate")


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``meterwax bench ARGS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", *args],
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        cwd=cwd,
        check=False,
    )


@pytest.mark.integration
def test_bench_smoke_matches_ground_truth(
    tmp_path: Path, kafka_brokers: str, redis_url: str
) -> None:
    out = tmp_path / "report"
    completed = bench(
        tmp_path,
        *("--mode", "both", "--engine", "both", "--events", "8000", "--tenants", "50"),
        *("--out", str(out), "--brokers", kafka_brokers, "--redis-url", redis_url),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "ground truth PASSED" in completed.stdout

    report = json.loads((out / "report.json").read_text())
    truth = json.loads((out / "truth.json").read_text())
    assert report["workload"]["name"] == "w2"
    assert report["checks"]["passed"] is True
    # The raw ceiling read the whole topic twice, before and after the flows.
    raw = report["raw_ceiling"]
    assert [run["when"] for run in raw["runs"]] == ["before", "after"]
    assert all(run["events"] == truth["messages"] for run in raw["runs"])
    assert raw["events_per_s"] == max(run["events_per_s"] for run in raw["runs"])
    assert 0 <= raw["spread"] < 1
    assert set(report["modes"]) == {"lean", "lean-native", "full", "full-native"}
    for mode, result in report["modes"].items():
        checks = result["checks"]
        assert checks["passed"] is True and checks["failures"] == [], mode
        # Every tenant/meter quantity was compared; only full keeps the log reconcile reads.
        assert checks["compared"] == sum(len(m) for m in truth["usage"].values())
        if mode.startswith("full"):
            assert checks["reconcile_windows"] > 0
        else:
            assert checks["reconcile_windows"] is None
        flow = result["flow"]
        assert flow["events"] == truth["messages"]
        # Timed from the first message to the last write: inside the process's wall time.
        assert 0 < flow["seconds"] < flow["wall_seconds"]
        assert flow["events_per_s"] == pytest.approx(flow["events"] / flow["seconds"])
        assert result["ratio"] == pytest.approx(flow["events_per_s"] / raw["events_per_s"])
        assert flow["peak_rss_bytes"] > 0
        stages = {row["stage"]: row for row in result["stages"]}
        assert set(STAGES) <= set(stages), mode
        assert "write_clickhouse_windows (own thread)" in stages
        # The flow thread's stages and "other" make up the flow's time; the ClickHouse
        # writes overlap it in threads of their own.
        flow_thread = [r for r in result["stages"] if not r["stage"].endswith("(own thread)")]
        assert sum(row["seconds"] for row in flow_thread) == pytest.approx(flow["seconds"])
    for engine in ("", "-native"):
        full = {row["stage"] for row in report["modes"][f"full{engine}"]["stages"]}
        lean = {row["stage"] for row in report["modes"][f"lean{engine}"]["stages"]}
        assert {"write_clickhouse_events (own thread)", "write_live_usage"} <= full - lean
    md = (out / "report.md").read_text()
    assert md.count("| meterwax ") == 4 and "| parse |" in md
    assert (out / "chart.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.integration
def test_bench_latency_phase_reports_arrival_to_live_counter(
    tmp_path: Path, kafka_brokers: str, redis_url: str
) -> None:
    # The phase tails a topic of its own, which must exist before the flow starts.
    out = tmp_path / "report"
    completed = bench(
        tmp_path,
        *("--mode", "lean", "--engine", "native", "--events", "2000", "--tenants", "20"),
        *("--latency-rate", "2000", "--latency-seconds", "2"),
        *("--out", str(out), "--brokers", kafka_brokers, "--redis-url", redis_url),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    latency = json.loads((out / "report.json").read_text())["latency"]
    assert latency["messages"] >= 4000  # events, and the workload's duplicates
    assert json.loads((out / "latency.json").read_text())["flow"]["engine"] == "native"
    quantiles = latency["latency_ms"]["live_counter"]
    assert 0 < quantiles["p50"] <= quantiles["p99"]


def test_bench_refuses_an_out_directory_with_an_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "report"
    (out / "ch-lean-native").mkdir(parents=True)
    completed = bench(tmp_path, "--events", "10", "--out", str(out))
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        f"meterwax bench: --out {out} already holds a bench run (ch-lean-native); "
        "give a new or empty directory"
    )
