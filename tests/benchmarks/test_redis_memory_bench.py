"""Smoke run of benchmarks/redis_memory.py: both layouts claim every event, both measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.redis_memory import main

pytestmark = pytest.mark.integration


def test_redis_memory_benchmark_reports_both_layouts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = tmp_path / "figures.json"
    assert main(["--keys", "3000", "--days", "2", "--batch", "700", "--json", str(figures)]) == 0

    report = json.loads(figures.read_text())
    assert [r["layout"] for r in report["results"]] == ["old", "day-buckets"]
    assert all(r["keys"] == 2_999 and r["claims_per_s"] > 0 for r in report["results"])
    old, new = report["results"]
    assert old["redis_keys"] == 3_000
    # ~40 claims per bucket; two days of event time fall on two or three dates,
    # each with a count and a sweep.
    assert 3_000 // 40 + 2 * 2 <= new["redis_keys"] <= 3_000 // 40 + 3 + 3 * 2
    out = capsys.readouterr().out
    assert "| old |" in out and "| day-buckets |" in out
