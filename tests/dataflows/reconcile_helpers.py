"""Reconciliation as the tests use it: stored events against rated windows."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from reports.reconciliation import differences
from tests.dataflows.scenario import MINUTE

# Whole billing periods around the scenario (calendar months, UTC): October and November 2026.
PERIODS_START_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z
PERIODS_END_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z


def reconciles(
    client: Client, database: str, catalogs: tuple[MeterCatalog, PricingCatalog]
) -> bool:
    """Whether every window around the scenario agrees with the event log."""
    compared, found = differences(
        client,
        database,
        catalogs[1],
        size_ms=MINUTE,
        start_ms=PERIODS_START_MS,
        end_ms=PERIODS_END_MS,
    )
    return compared > 0 and not found
