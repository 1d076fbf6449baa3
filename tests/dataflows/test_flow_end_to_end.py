"""The real flow (Bytewax, real catalogs, chDB) against an independently computed expectation."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
from bytewax.testing import cluster_main, run_main
from clickhouse_connect.driver.client import Client

from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from dataflows.flow import FlowSpec, build_flow
from dataflows.outputs import EventLogSink, RatedWindowSink, RejectionSink
from dataflows.sources import JsonlFileSource
from dataflows.stats import RunStats
from operators.windowing import WindowConfig
from sinks.clickhouse import ClickHouseWriter, connect, rejected_counts, usage_totals
from tests.dataflows.scenario import (
    MINUTE,
    SCENARIO_CLOCK,
    Scenario,
    build_scenario,
    expected_totals,
)


def _run(
    path: Path,
    catalogs: tuple[MeterCatalog, PricingCatalog],
    dsn: str,
    database: str,
    *,
    batch_size: int,
    workers: int = 1,
    engine: Literal["python", "native"] = "python",
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
        engine=engine,
        clock=SCENARIO_CLOCK,
    )

    def open_writer() -> ClickHouseWriter:
        return ClickHouseWriter(connect(dsn, database), database)

    stats = RunStats()
    flow = build_flow(
        spec,
        source=JsonlFileSource([path], batch_size, clock=SCENARIO_CLOCK),
        window_sink=RatedWindowSink(open_writer),
        rejection_sink=RejectionSink(open_writer),
        event_log_sink=EventLogSink(
            open_writer, {m.slug: m.aggregation.value for m in meters.meters}
        ),
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


@pytest.mark.parametrize("engine", ["python", "native"])
@pytest.mark.parametrize("workers", [1, 2])
def test_flow_totals_match_independent_expectation(
    scenario_file: tuple[Scenario, Path],
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    ch_client: Client,
    ch_database: str,
    workers: int,
    engine: Literal["python", "native"],
) -> None:
    scenario, path = scenario_file
    stats = _run(
        path, catalogs, chdb_dsn, ch_database, batch_size=10, workers=workers, engine=engine
    )

    assert stats.consumed == len(scenario.lines)
    assert stats.accepted == len(scenario.accepted)
    assert stats.duplicates == scenario.duplicates
    assert dict(stats.rejected) == dict(scenario.rejected)
    assert stats.reconciles
    assert stats.adjustments > 0, "5-minute-late events must become adjustments"
    assert _totals(ch_client, ch_database) == expected_totals(scenario)
    assert rejected_counts(ch_client, ch_database) == dict(scenario.rejected)


@pytest.mark.parametrize("engine", ["python", "native"])
def test_rerun_with_other_batching_changes_no_total(
    scenario_file: tuple[Scenario, Path],
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    ch_client: Client,
    ch_database: str,
    engine: Literal["python", "native"],
) -> None:
    scenario, path = scenario_file
    _run(path, catalogs, chdb_dsn, ch_database, batch_size=10, engine=engine)
    first = _totals(ch_client, ch_database)
    _run(path, catalogs, chdb_dsn, ch_database, batch_size=333, engine=engine)

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
