"""``meterwax reconcile``: usage recomputed from the event log against the rated windows."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from config.errors import ConfigError
from config.meter_catalog import load_meter_catalog
from config.pricing import PricingCatalog
from config.pricing_catalog import load_pricing_catalog
from config.settings import Settings, load_settings
from operators.periods import billing_segment
from operators.pricing import period_cost
from operators.reconcile import (
    Difference,
    SegmentKey,
    WindowKey,
    reconcile_amounts,
    reconcile_windows,
)
from operators.timeparse import TimeFormatError, parse_rfc3339_ms
from sinks.clickhouse import DsnError, SinkError, connect
from sinks.clickhouse_reconcile import RecomputedWindow, rated_usage, recomputed_usage


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``meterwax reconcile``."""
    parser = sub.add_parser(
        "reconcile",
        help="recompute usage from stored events and compare it with the rated windows",
        description="Exits 0 when every window in the range agrees, 1 on any difference.",
    )
    parser.add_argument(
        "--from", dest="start", required=True, help="RFC 3339, e.g. 2026-11-01T00:00:00Z"
    )
    parser.add_argument("--to", dest="end", required=True, help="RFC 3339 (exclusive)")
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--config", type=Path, help="YAML settings file, as for `run`")
    parser.add_argument("--dsn", dest="clickhouse.dsn")
    parser.add_argument("--database", dest="clickhouse.database")
    parser.add_argument("--meters", dest="catalogs.meters")
    parser.add_argument("--pricing", dest="catalogs.pricing")
    parser.add_argument("--window", dest="window.size", help="the window length the flow used")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _time(flag: str, text: str) -> int:
    try:
        return parse_rfc3339_ms(text)
    except TimeFormatError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _segment(pricing: PricingCatalog, key: WindowKey) -> tuple[SegmentKey, int] | None:
    """The billing-period segment a window belongs to, and the segment's end."""
    segment = billing_segment(pricing, key.tenant, key.start_ms)
    if segment is None:
        return None
    period = SegmentKey(key.tenant, key.meter, segment.period_start_ms, segment.version_name)
    return period, segment.period_end_ms


def _period_quantity(windows: list[RecomputedWindow]) -> Decimal:
    """The period's usage from its windows, as the meter's aggregation defines it."""
    aggregation = windows[0].aggregation
    if aggregation == "UNIQUE_COUNT":
        return Decimal(len(frozenset().union(*(w.distinct_values for w in windows))))
    if aggregation == "MAX":
        return max(w.quantity for w in windows)
    if aggregation == "LATEST":
        return max(windows, key=lambda w: (w.latest_ms, w.quantity)).quantity
    return sum((w.quantity for w in windows), Decimal(0))


def _price(pricing: PricingCatalog, key: SegmentKey, quantity: Decimal) -> Decimal:
    subscription = pricing.subscription_for(key.tenant)
    assert subscription is not None
    plan = pricing.plans[subscription.plan]
    version = plan.version_named(key.price_version)
    price = None if version is None else version.prices.get(key.meter)
    return Decimal(0) if price is None else period_cost(price, quantity)


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
    bounds = {"size_ms": size_ms, "start_ms": start_ms, "end_ms": end_ms, "tenant": tenant}
    recomputed = recomputed_usage(client, database, **bounds)
    rated = rated_usage(client, database, **bounds)
    found = reconcile_windows(
        {key: w.quantity for key, w in recomputed.items()},
        {key: r.quantity for key, r in rated.items()},
    )
    usage: dict[SegmentKey, list[RecomputedWindow]] = defaultdict(list)
    charged: dict[SegmentKey, Decimal] = defaultdict(Decimal)
    for windows in (recomputed, rated):
        for key, value in windows.items():
            located = _segment(pricing, key)
            if located is None or located[0].period_start_ms < start_ms or located[1] > end_ms:
                continue
            if isinstance(value, RecomputedWindow):
                usage[located[0]].append(value)
            else:
                charged[located[0]] += value.amount
    expected = {key: _price(pricing, key, _period_quantity(ws)) for key, ws in usage.items()}
    found += reconcile_amounts(expected, charged)
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


def _render(compared: int, found: list[Difference]) -> str:
    if not found:
        return f"reconciled: {compared} windows, no differences"
    lines = [f"{len(found)} differences in {compared} windows:"]
    for d in found:
        where = " ".join(str(part) for part in d.key)
        lines.append(f"  {d.problem.value:<15} {where}: events say {d.expected}, rated {d.rated}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax reconcile``: 0 when all windows agree.

    1 on differences or when ClickHouse cannot be reached, 2 on bad input.
    """
    overrides: dict[str, dict[str, Any]] = {}
    for name, value in vars(args).items():
        if "." in name and value is not None:
            section, field = name.split(".", 1)
            overrides.setdefault(section, {})[field] = value
    try:
        settings = load_settings(args.config, overrides)
        start, end = _time("--from", args.start), _time("--to", args.end)
        if end <= start:
            raise ConfigError("--to must be later than --from")
        compared, found = check(settings, start, end, args.tenant)
    except ConfigError as exc:
        print(f"meterwax reconcile: {exc}", file=sys.stderr)
        return 2
    except SinkError as exc:
        print(f"meterwax reconcile: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "windows": compared,
                    "differences": [
                        {
                            "problem": d.problem.value,
                            **d.key._asdict(),
                            "expected": None if d.expected is None else str(d.expected),
                            "rated": None if d.rated is None else str(d.rated),
                        }
                        for d in found
                    ],
                },
                indent=2,
            )
        )
    else:
        print(_render(compared, found))
    return 1 if found else 0
