"""Reconciliation as the tests use it: stored events against rated windows."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from dataflows.reconcile_command import differences
from operators.rating import Rater
from tests.dataflows.scenario import BASE_MS, MINUTE

DAY = 86_400_000


def reconciles(
    client: Client, database: str, catalogs: tuple[MeterCatalog, PricingCatalog]
) -> bool:
    """Whether every window around the scenario agrees with the event log."""
    compared, found = differences(
        client,
        database,
        Rater(catalogs[1]),
        size_ms=MINUTE,
        start_ms=BASE_MS - DAY,
        end_ms=BASE_MS + 7 * DAY,
    )
    return compared > 0 and not found
