"""ClickHouse failing under the flow: transient errors are ridden out, permanent ones stop it.

The faults are injected by a thin wrapper around the real chDB client: it
raises for a while, then passes every insert through to the real engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from cli.run_command import STOPPING_ERRORS, _root_cause
from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from dataflows.flow import FlowSpec, build_flow
from dataflows.outputs import EventLogSink, RatedWindowSink, RejectionSink
from dataflows.sources import JsonlFileSource
from dataflows.stats import RunStats
from operators.windowing import WindowConfig
from sinks.clickhouse import ClickHouseWriter, SinkError, usage_totals
from tests.dataflows.reconcile_helpers import reconciles
from tests.dataflows.scenario import MINUTE, SCENARIO_CLOCK, build_scenario, expected_totals

pytestmark = pytest.mark.integration


class FlakyClient:
    """The real client, but inserts fail while ``failing()`` says so."""

    def __init__(self, client: Client, error: Exception, *, for_s: float = 0, times: int = 0):
        self._client = client
        self._error = error
        self._until = time.monotonic() + for_s
        self._times = times
        self.failures = 0

    def failing(self) -> bool:
        return time.monotonic() < self._until or self.failures < self._times

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        database: str,
        *,
        column_oriented: bool = False,
    ) -> object:
        if self.failing():
            self.failures += 1
            raise self._error
        return self._client.insert(
            table,
            data,
            column_names=column_names,
            database=database,
            column_oriented=column_oriented,
        )


def _run(
    path: Path,
    catalogs: tuple[MeterCatalog, PricingCatalog],
    client: Any,
    database: str,
    *,
    recovery: Path | None = None,
) -> RunStats:
    meters, pricing = catalogs
    spec = FlowSpec(
        meters=meters,
        pricing=pricing,
        window=WindowConfig(MINUTE, 30_000, 3_600_000, 10_000),
        dedup_horizon_ms=3_600_000,
        shards=4,
        snapshots=recovery is not None,
        instance="sink-failures",
        clock=SCENARIO_CLOCK,
    )

    def open_writer() -> ClickHouseWriter:
        return ClickHouseWriter(client, database, max_attempts=6, backoff_base_s=0.05)

    stats = RunStats()
    flow = build_flow(
        spec,
        source=JsonlFileSource([path], 20, clock=SCENARIO_CLOCK),
        window_sink=RatedWindowSink(open_writer),
        rejection_sink=RejectionSink(open_writer),
        event_log_sink=EventLogSink(
            open_writer, {m.slug: m.aggregation.value for m in meters.meters}
        ),
        stats=stats,
    )
    config = None
    if recovery is not None:
        if not any(recovery.glob("*.sqlite3")):
            init_db_dir(recovery, 1)
        config = RecoveryConfig(recovery)
    run_main(flow, recovery_config=config)
    return stats


@pytest.fixture
def events(tmp_path: Path) -> tuple[Path, Any]:
    scenario = build_scenario(count=600)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(scenario.lines) + b"\n")
    return path, scenario


def _totals(client: Client, database: str) -> dict[tuple[str, str], tuple[Any, Any]]:
    return {(t.tenant, t.meter): (t.quantity, t.amount) for t in usage_totals(client, database)}


def test_transient_insert_errors_are_retried_without_loss_or_double_count(
    events: tuple[Path, Any],
    catalogs: tuple[MeterCatalog, PricingCatalog],
    ch_client: Client,
    ch_database: str,
) -> None:
    path, scenario = events
    # Server overloaded (TOO_MANY_PARTS, code 252) for the first five inserts.
    flaky = FlakyClient(ch_client, DatabaseError("Code: 252. Too many parts", code=252), times=5)

    stats = _run(path, catalogs, flaky, ch_database)

    assert flaky.failures == 5
    assert stats.reconciles
    assert _totals(ch_client, ch_database) == expected_totals(scenario)


def test_unreachable_clickhouse_for_a_while_pauses_then_catches_up(
    events: tuple[Path, Any],
    catalogs: tuple[MeterCatalog, PricingCatalog],
    ch_client: Client,
    ch_database: str,
) -> None:
    path, scenario = events
    flaky = FlakyClient(ch_client, ConnectionRefusedError(111, "Connection refused"), for_s=0.8)

    _run(path, catalogs, flaky, ch_database)

    assert flaky.failures >= 2
    assert _totals(ch_client, ch_database) == expected_totals(scenario)


def test_permanent_error_stops_the_flow_and_a_restart_loses_nothing(
    events: tuple[Path, Any],
    catalogs: tuple[MeterCatalog, PricingCatalog],
    ch_client: Client,
    ch_database: str,
    tmp_path: Path,
) -> None:
    path, scenario = events
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    # UNKNOWN_TABLE (60): retrying cannot help, so the flow must stop, not drop rows.
    broken = FlakyClient(
        ch_client, DatabaseError("Code: 60. Table does not exist", code=60), times=10**9
    )

    with pytest.raises(Exception) as stopped:
        _run(path, catalogs, broken, ch_database, recovery=recovery)
    # The engine may wrap the sink's error; `meterwax run` finds it in the chain.
    cause = _root_cause(stopped.value, STOPPING_ERRORS)
    assert isinstance(cause, SinkError)
    assert "failed after 1 attempt" in str(cause)
    assert _totals(ch_client, ch_database) == {}

    _run(path, catalogs, ch_client, ch_database, recovery=recovery)

    assert _totals(ch_client, ch_database) == expected_totals(scenario)
    assert reconciles(ch_client, ch_database, catalogs)
