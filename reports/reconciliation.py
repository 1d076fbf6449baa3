"""Reconciliation: usage recomputed from the event log against the rated windows in ClickHouse."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from config.errors import ConfigError
from config.meter_catalog import load_meter_catalog
from config.pricing import PricingCatalog
from config.pricing_catalog import load_pricing_catalog
from config.settings import Settings
from operators.reconcile import Difference
from operators.reconcile import differences as differences_of
from sinks.clickhouse import DsnError, connect
from sinks.clickhouse_reconcile import rated_usage, recomputed_usage


def differences(
    client: Client,
    database: str,
    pricing: PricingCatalog,
    *,
    size_ms: int,
    start_ms: int,
    end_ms: int,
    tenant: str | None = None,
) -> tuple[int, list[Difference]]:
    """(windows compared, differences) for windows in [start, end).

    Quantities are compared window by window. Amounts are compared per billing
    period (and price version): the windows' amounts must add up to the price
    of the period's usage; only periods wholly inside the range are checked.
    """
    recomputed = recomputed_usage(
        client, database, size_ms=size_ms, start_ms=start_ms, end_ms=end_ms, tenant=tenant
    )
    rated = rated_usage(
        client, database, size_ms=size_ms, start_ms=start_ms, end_ms=end_ms, tenant=tenant
    )
    found = differences_of(pricing, recomputed, rated, start_ms=start_ms, end_ms=end_ms)
    return len(recomputed.keys() | rated.keys()), found


def check(
    settings: Settings, start_ms: int, end_ms: int, tenant: str | None
) -> tuple[int, list[Difference]]:
    """(windows compared, differences) for [start, end), with the catalogs of ``settings``."""
    meters = load_meter_catalog(settings.catalogs.meters)
    pricing = load_pricing_catalog(settings.catalogs.pricing, meters)
    ch = settings.clickhouse
    try:
        client = connect(ch.dsn.get_secret_value(), ch.database)
    except DsnError as exc:
        raise ConfigError(f"clickhouse.dsn: {exc}") from None
    return differences(
        client,
        ch.database,
        pricing,
        size_ms=settings.window.size,
        start_ms=start_ms,
        end_ms=end_ms,
        tenant=tenant,
    )
