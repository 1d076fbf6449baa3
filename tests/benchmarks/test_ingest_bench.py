"""Smoke run of the ingest benchmark: small, but the whole path (HTTP, Kafka, a running flow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT_S = 240.0


@pytest.mark.integration
@pytest.mark.parametrize("embedded", [False, True])
def test_ingest_bench_reports_rates_and_latencies(tmp_path: Path, embedded: bool) -> None:
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.ingest", "--events", "400", "--json"),
            *(["--embedded"] if embedded else []),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.splitlines()[-1])
    assert [(r["batch"], r["events"]) for r in results] == [(100, 400), (1000, 1000)]
    for result in results:
        assert result["events_per_s"] > 0
        assert 0 < result["p50_ms"] <= result["p99_ms"]
