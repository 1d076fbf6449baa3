"""What ``meterwax run`` prints: period usage, invoice rounding, escaped text, late counts."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import pytest

from cli.main import main
from cli.summary import write_json
from config.display import printable
from operators.periods import billing_period

PRICING = """
default_plan: basic
plans:
  - id: basic
    currency: USD
    versions:
      - version: v1
        effective_from: "1970-01-01T00:00:00Z"
        prices:
          storage_gb: { model: per_unit, unit_price: "0.025" }
          active_users: { model: per_unit, unit_price: "0.333" }
          tokens: { model: per_unit, unit_price: "0.001" }
"""
MINUTE_MS = 60_000
# A subject that would move the cursor and colour the terminal if printed raw.
HOSTILE = "evil\n\x1b[31mtenant"


def _event(source: str, n: int, tenant: str, time_ms: int, kind: str, data: str) -> str:
    instant = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time_ms // 1000))
    return (
        f'{{"specversion":"1.0","id":"e{n}","source":"{source}","type":"{kind}",'
        f'"subject":{json.dumps(tenant)},"time":"{instant}.{time_ms % 1000:03d}Z",'
        f'"data":{data}}}'
    )


def _last_month_ms() -> int:
    """A day into the previous calendar month: one whole period, never in the future."""
    this_month, _ = billing_period(time.time_ns() // 1_000_000, 1, "UTC")
    last_month, _ = billing_period(this_month - 1, 1, "UTC")
    return last_month + 86_400_000


def _run(tmp_path: Path, chdb_dsn: str, database: str, lines: list[str], *extra: str) -> int:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    pricing = tmp_path / "pricing.yaml"
    pricing.write_text(PRICING)
    return main(
        [
            *("run", "--input-path", str(events), "--pricing", str(pricing)),
            *("--dsn", chdb_dsn, "--database", database, "--no-progress", *extra),
        ]
    )


def test_summary_shows_period_peak_distinct_users_and_invoice_rounding(
    tmp_path: Path, chdb_dsn: str, ch_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base, source = _last_month_ms(), "summary-test"
    snapshots = [(0, "10.5"), (1, "20.25"), (61, "30.125"), (125, "5")]  # (seconds, GB)
    users = [(2, "u1"), (3, "u2"), (62, "u2"), (63, "u3"), (126, "u1")]
    lines = [
        _event(source, n, HOSTILE, base + s * 1000, "storage.snapshot", f'{{"gb":{gb}}}')
        for n, (s, gb) in enumerate(snapshots)
    ]
    lines += [
        _event(source, 10 + n, HOSTILE, base + s * 1000, "api.request", f'{{"user_id":"{u}"}}')
        for n, (s, u) in enumerate(users)
    ]

    code = _run(tmp_path, chdb_dsn, ch_database, lines)

    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b" not in out
    assert not any(line.startswith("\x1b") or line.startswith("[31m") for line in out.splitlines())
    shown = printable(HOSTILE)[:18]
    assert shown == "evil\\n\\x1b[31mtena"
    rows = [line.split() for line in out.splitlines() if line.startswith(f"  {shown}")]
    this_run, stored = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    # Three windows: the period's peak is 30.125 GB (their maxima add up to 55.375)
    # and 3 users are distinct (5 per window, added up): 0.753125 and 0.999 USD.
    assert [r[1:] for r in this_run] == [
        ["active_users", _period(base), "v1", "3", "1.00", "USD"],
        ["api_calls", _period(base), "v1", "5", "0.00", "USD"],  # no price: free
        ["storage_gb", _period(base), "v1", "30.125", "0.75", "USD"],
    ]
    assert [r[1:] for r in stored] == [
        ["active_users", _period(base), "v1", "3", "1.00", "USD"],
        ["api_calls", _period(base), "v1", "5", "0.00", "USD"],  # no price: free
        ["storage_gb", _period(base), "v1", "30.125", "0.75", "USD"],
    ]
    assert "amount (rounded)" in out
    assert "rounded half-even to the currency's minor unit, as the invoice rounds" in out


def test_json_summary_keeps_exact_amounts_beside_the_rounded_ones(
    tmp_path: Path, chdb_dsn: str, ch_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _last_month_ms()
    lines = [
        _event(
            "json-test",
            n,
            "acme-json",
            base + n * MINUTE_MS,
            "api.request",
            f'{{"user_id":"u{n % 2}"}}',
        )
        for n in range(3)
    ]

    code = _run(tmp_path, chdb_dsn, ch_database, lines, "--json")

    out = json.loads(capsys.readouterr().out)
    assert code == 0
    [row] = [r for r in out["billing_periods"]["this_run"] if r["meter"] == "active_users"]
    assert row == {
        "tenant": "acme-json",
        "meter": "active_users",
        "period_start": _period(base),
        "plan_id": "basic",
        "price_version": "v1",
        "quantity": "2",
        "amount": "0.666",
        "amount_rounded": "0.67",
        "currency": "USD",
    }
    stored = [r for r in out["billing_periods"]["stored"] if r["meter"] == "active_users"]
    # The stored windows keep their distinct values: the store tells the period too.
    assert stored == [row]


def test_json_summary_times_the_run_and_each_stage(
    tmp_path: Path, chdb_dsn: str, ch_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _last_month_ms()
    data = '{"tokens":5}'
    lines = [_event("timed", n, "acme", base + n * 1000, "llm.completion", data) for n in range(50)]

    code = _run(tmp_path, chdb_dsn, ch_database, lines, "--json", "--batch-size", "10")

    out = json.loads(capsys.readouterr().out)
    assert code == 0
    # From the first input batch to the last write, not from start-up.
    processing = out["processing"]
    assert processing["seconds"] > 0
    assert processing["events_per_s"] == pytest.approx(50 / processing["seconds"])
    stages = out["stages"]
    assert stages["parse"]["batches"] == 5
    for stage in ("screen", "fold", "finish", "rate", "write_clickhouse_windows"):
        assert stages[stage]["batches"] >= 1, stage
    # Stage timers cover part of the processing time, never more.
    assert sum(s["seconds"] for s in stages.values()) <= processing["seconds"]


def test_replay_counts_no_late_event_it_did_not_accept(
    tmp_path: Path,
    chdb_dsn: str,
    ch_database: str,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, source = _last_month_ms(), f"late-{uuid.uuid4().hex}"
    offsets_s = [0, 10, 300, 20, 310]  # the event at 20 s comes after its window closed
    lines = [
        _event(
            source, n, "late-tenant", base + s * 1000, "llm.completion", '{"tokens":5,"model":"m"}'
        )
        for n, s in enumerate(offsets_s)
    ]
    flags = ("--redis-url", redis_url, "--batch-size", "1", "--json")

    first = _run(tmp_path, chdb_dsn, ch_database, lines, *flags)
    counted = json.loads(capsys.readouterr().out)["run"]
    # A fresh flow over the same input: Redis knows every event.
    second = _run(tmp_path, chdb_dsn, ch_database, lines, *flags)
    replayed = json.loads(capsys.readouterr().out)

    assert (first, second) == (0, 0)
    assert (counted["accepted"], counted["late_accepted"]) == (5, 1)
    run = replayed["run"]
    assert (run["accepted"], run["redis_duplicates"], run["late_accepted"]) == (0, 5, 0)
    assert replayed["billing_periods"]["this_run"] == []
    [stored] = replayed["billing_periods"]["stored"]
    assert (stored["quantity"], stored["amount"]) == ("25", "0.025")


def _period(at_ms: int) -> str:
    start, _ = billing_period(at_ms, 1, "UTC")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start // 1000))


def test_json_writer_streams_row_iterators_as_the_json_module_would_read_them() -> None:
    rows = [{"tenant": HOSTILE, "quantity": "1.50", "n": None}, {"tenant": "b", "quantity": "2"}]
    data = {
        "run": {"consumed": 3, "rejected": {}, "nested": {"list": [1, "x"]}},
        "usage": iter(rows),
        "none": iter([]),
        "pair": (1, 2.5),
    }
    out = io.StringIO()
    write_json(data, out)
    assert json.loads(out.getvalue()) == {
        "run": {"consumed": 3, "rejected": {}, "nested": {"list": [1, "x"]}},
        "usage": rows,
        "none": [],
        "pair": [1, 2.5],
    }
    # One row per line: a big summary stays readable and greppable.
    assert sum(line.lstrip().startswith('{"tenant"') for line in out.getvalue().splitlines()) == 2
