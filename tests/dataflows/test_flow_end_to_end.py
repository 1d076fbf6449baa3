"""The real flow (Bytewax, real catalogs, chDB) against an independently computed expectation."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from bytewax.testing import cluster_main, run_main
from clickhouse_connect.driver.client import Client

from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from dataflows.flow import FlowSpec, build_flow
from dataflows.outputs import RatedWindowSink, RejectionSink
from dataflows.sources import JsonlFileSource
from dataflows.stats import RunStats
from operators.windowing import WindowConfig
from sinks.clickhouse import ClickHouseWriter, connect, rejected_counts, usage_totals

MINUTE = 60_000
BASE_MS = 1_793_489_400_000  # 2026-10-31T23:30:00Z: the price change at 00:00 falls inside
PRICE_CHANGE_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
TENANTS = ("acme", "globex", "umbrella", "initech")
PRICES = {  # (plan, version) -> meter -> unit price, as in tests/dataflows/conftest.py
    "v1": {"tokens": "0.000002", "calls": "0.0001", "users": "0.01", "peak_gb": "0.003"},
    "v2": {"tokens": "0.0000015", "calls": "0.0002", "users": "0.01", "peak_gb": "0.004"},
    "p1": {"tokens": "0.000001", "calls": "0.00005"},
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _event(n: int, time_ms: int, tenant: str, kind: int) -> dict[str, object]:
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "tests/e2e",
        "subject": tenant,
        "time": _iso(time_ms),
    }
    if kind == 0:
        event |= {"type": "llm.completion", "data": {"tokens": n % 97 + 1, "model": f"m{n % 3}"}}
    elif kind == 1:
        event |= {"type": "api.request", "data": {"user": f"u{n % 7}"}}
    else:
        event |= {"type": "storage.snapshot", "data": {"gb": f"{n % 50}.25"}}
    return event


@dataclass
class Scenario:
    """The input lines and what a correct meter must make of them."""

    lines: list[bytes] = field(default_factory=list)
    accepted: list[dict[str, object]] = field(default_factory=list)
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


def build_scenario(count: int = 1200) -> Scenario:
    """Events 1 s apart, with duplicates, late (5 min), too-late (3 h) and broken lines."""
    s = Scenario()
    for n in range(count):
        time_ms = BASE_MS + n * 1000
        event = _event(n, time_ms, TENANTS[n % 4], n % 3)
        s.lines.append(json.dumps(event).encode())
        s.accepted.append(event)
        if n % 40 == 39:  # an exact retry of an earlier event
            s.lines.append(json.dumps(s.accepted[n - 30]).encode())
            s.duplicates += 1
        if n % 97 == 96:  # same source and id, different body: still the same event
            again = dict(s.accepted[n - 5])
            again["time"] = _iso(time_ms)
            s.lines.append(json.dumps(again).encode())
            s.duplicates += 1
        if n % 50 == 49 and n > 400:  # late by 5 minutes: an adjustment
            late = _event(100_000 + n, time_ms - 5 * MINUTE, TENANTS[(n + 1) % 4], n % 3)
            s.lines.append(json.dumps(late).encode())
            s.accepted.append(late)
        if n in (700, 900):  # 3 hours late: past the settlement horizon
            s.lines.append(
                json.dumps(_event(200_000 + n, time_ms - 180 * MINUTE, "acme", 0)).encode()
            )
            s.rejected["too_late"] += 1
    s.lines.insert(10, b'{"specversion": "1.0", "id": ')
    s.lines.insert(20, json.dumps({**_event(300_001, BASE_MS, "acme", 0), "type": "x.y"}).encode())
    s.lines.insert(
        30,
        json.dumps({**_event(300_002, BASE_MS, "acme", 0), "time": "2026-11-01T00:00:00"}).encode(),
    )
    s.lines.insert(
        40,
        json.dumps(
            _event(300_003, BASE_MS, "acme", 0) | {"data": {"tokens": -1, "model": "m0"}}
        ).encode(),
    )
    s.rejected.update(["malformed_json", "unknown_event_type", "bad_time", "negative_value"])
    return s


def expected_totals(s: Scenario) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """Per (tenant, meter): quantity and amount, computed straight from the accepted events."""
    windows: dict[tuple[str, str, tuple[str, ...], int], list[Decimal | str]] = defaultdict(list)
    for event in s.accepted:
        data = event["data"]
        assert isinstance(data, dict)
        time_ms = _parse_ms(str(event["time"]))
        start = time_ms - time_ms % MINUTE
        tenant = str(event["subject"])
        if event["type"] == "llm.completion":
            windows[(tenant, "tokens", (str(data["model"]),), start)].append(
                Decimal(data["tokens"])
            )
        elif event["type"] == "api.request":
            windows[(tenant, "calls", (), start)].append(Decimal(1))
            windows[(tenant, "users", (), start)].append(str(data["user"]))
        else:
            windows[(tenant, "peak_gb", (), start)].append(Decimal(str(data["gb"])))
    totals: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for (tenant, meter, _groups, start), values in windows.items():
        if meter == "users":
            quantity = Decimal(len(set(values)))
        elif meter == "peak_gb":
            quantity = max(v for v in values if isinstance(v, Decimal))
        else:
            quantity = sum((v for v in values if isinstance(v, Decimal)), Decimal(0))
        version = "p1" if tenant == "acme" else ("v2" if start >= PRICE_CHANGE_MS else "v1")
        price = Decimal(PRICES[version].get(meter, "0"))
        q, a = totals.get((tenant, meter), (Decimal(0), Decimal(0)))
        totals[(tenant, meter)] = (q + quantity, a + quantity * price)
    return totals


def _parse_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _run(
    path: Path,
    catalogs: tuple[MeterCatalog, PricingCatalog],
    dsn: str,
    database: str,
    *,
    batch_size: int,
    workers: int = 1,
) -> RunStats:
    meters, pricing = catalogs
    spec = FlowSpec(
        meters=meters,
        pricing=pricing,
        window=WindowConfig(
            size_ms=MINUTE, grace_ms=30_000, settlement_ms=3_600_000, idle_timeout_ms=10_000
        ),
        dedup_horizon_ms=3_600_000,
        shards=4,
    )

    def open_writer() -> ClickHouseWriter:
        return ClickHouseWriter(connect(dsn, database), database)

    stats = RunStats()
    flow = build_flow(
        spec,
        source=JsonlFileSource([path], batch_size),
        window_sink=RatedWindowSink(open_writer),
        rejection_sink=RejectionSink(open_writer),
        stats=stats,
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return stats


@pytest.fixture
def scenario_file(tmp_path: Path) -> tuple[Scenario, Path]:
    scenario = build_scenario()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(scenario.lines) + b"\n")
    return scenario, path


def _totals(client: Client, database: str) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    return {(t.tenant, t.meter): (t.quantity, t.amount) for t in usage_totals(client, database)}


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_totals_match_independent_expectation(
    scenario_file: tuple[Scenario, Path],
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    ch_client: Client,
    ch_database: str,
    workers: int,
) -> None:
    scenario, path = scenario_file
    stats = _run(path, catalogs, chdb_dsn, ch_database, batch_size=10, workers=workers)

    assert stats.consumed == len(scenario.lines)
    assert stats.accepted == len(scenario.accepted)
    assert stats.duplicates == scenario.duplicates
    assert dict(stats.rejected) == dict(scenario.rejected)
    assert stats.reconciles
    assert stats.adjustments > 0, "5-minute-late events must become adjustments"
    assert _totals(ch_client, ch_database) == expected_totals(scenario)
    assert rejected_counts(ch_client, ch_database) == dict(scenario.rejected)


def test_rerun_with_other_batching_changes_no_total(
    scenario_file: tuple[Scenario, Path],
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    ch_client: Client,
    ch_database: str,
) -> None:
    scenario, path = scenario_file
    _run(path, catalogs, chdb_dsn, ch_database, batch_size=10)
    first = _totals(ch_client, ch_database)
    _run(path, catalogs, chdb_dsn, ch_database, batch_size=333)

    assert _totals(ch_client, ch_database) == first == expected_totals(scenario)
    assert sum(rejected_counts(ch_client, ch_database).values()) == sum(scenario.rejected.values())


def test_adjustment_rows_link_to_the_window_they_correct(
    scenario_file: tuple[Scenario, Path],
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    ch_client: Client,
    ch_database: str,
) -> None:
    _, path = scenario_file
    _run(path, catalogs, chdb_dsn, ch_database, batch_size=10)
    rows = ch_client.query(
        f"SELECT kind, sum(delta_quantity), count() "
        f"FROM `{ch_database}`.window_changes GROUP BY kind"
    ).result_rows
    by_kind = {str(kind): (Decimal(total), int(n)) for kind, total, n in rows}
    assert by_kind["adjustment"][1] > 0
    window_total = ch_client.query(
        f"SELECT sum(quantity) FROM `{ch_database}`.window_usage"
    ).result_rows[0][0]
    # Deltas of windows and adjustments telescope to the windows' final totals.
    assert by_kind["window"][0] + by_kind["adjustment"][0] == window_total
