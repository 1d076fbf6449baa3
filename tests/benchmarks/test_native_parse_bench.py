"""Smoke run of benchmarks/native_parse.py: both parsers agree on the load and both are timed."""

from __future__ import annotations

import pytest

from benchmarks.native_parse import main


def test_native_parse_benchmark_reports_each_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--events", "2000", "--batch", "500", "--runs", "1"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("20")  # 2000 events plus the generator's duplicates
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "python parse",
        "native columns",
        "native + Python events",
    ]
    assert all("events/s" in line for line in lines[1:])
