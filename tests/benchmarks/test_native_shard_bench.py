"""Smoke run of benchmarks/native_shard.py: both shards agree on the load and both are timed."""

from __future__ import annotations

import pytest

from benchmarks.native_shard import main


def test_native_shard_benchmark_reports_each_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--events", "3000", "--batch", "200", "--runs", "1"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert "window revisions" in lines[0]
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["python shard", "native shard"]
    assert all("events/s" in line for line in lines[1:])
