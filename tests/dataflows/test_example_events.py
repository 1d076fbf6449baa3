"""The bundled example events and the generator share a store without colliding."""

from __future__ import annotations

import json
import time

import orjson
import pytest

from cli.main import main
from config.display import iso_utc
from config.settings import EXAMPLES
from operators.timeparse import parse_rfc3339_ms

DAY_MS = 86_400_000


def _example_times_ms() -> list[int]:
    times = []
    for line in (EXAMPLES / "events.jsonl").read_bytes().splitlines():
        try:
            times.append(parse_rfc3339_ms(orjson.loads(line)["time"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return times


def test_example_file_and_generator_runs_reconcile_cleanly(
    chdb_dsn: str, ch_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ("--dsn", chdb_dsn, "--database", ch_database, "--no-progress")
    # As the README goes: the example file, generated events, the example again.
    assert main(["run", *store]) == 0
    assert main(["run", "--input", "generator", "--events", "5000", *store]) == 0
    assert main(["run", *store]) == 0
    capsys.readouterr()
    times = _example_times_ms()
    start = min(times) - min(times) % DAY_MS
    end = max(*times, time.time_ns() // 1_000_000) + DAY_MS

    code = main(
        [
            *("reconcile", "--from", iso_utc(start), "--to", iso_utc(end), "--json"),
            *("--dsn", chdb_dsn, "--database", ch_database),
        ]
    )

    result = json.loads(capsys.readouterr().out)
    assert result["differences"] == []
    assert code == 0
    assert result["windows"] > 1_000


def test_example_ids_are_not_generator_ids() -> None:
    sources = set()
    for line in (EXAMPLES / "events.jsonl").read_bytes().splitlines():
        try:
            sources.add(orjson.loads(line).get("source"))
        except orjson.JSONDecodeError:
            continue
    assert "synthetic/meterwax" not in sources
