"""``meterwax reconcile``: usage recomputed from the event log against the rated windows."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from config.errors import ConfigError
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from config.settings import Settings, load_settings
from operators.model import GroupValues, WindowKind, WindowUsage
from operators.rating import Rater
from operators.reconcile import Difference, WindowKey, reconcile
from operators.timeparse import TimeFormatError, parse_rfc3339_ms
from sinks.clickhouse import connect
from sinks.clickhouse_reconcile import rated_usage, recomputed_usage


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


def _groups(group_key: str) -> GroupValues:
    return tuple(sorted(json.loads(group_key).items()))


def _pricer(rater: Rater, size_ms: int) -> Callable[[WindowKey, Decimal], Decimal]:
    def price(key: WindowKey, quantity: Decimal) -> Decimal:
        usage = WindowUsage(
            key.tenant,
            key.meter,
            _groups(key.group_key),
            key.start_ms,
            key.start_ms + size_ms,
            quantity,
            Decimal(0),
            0,
            WindowKind.WINDOW,
        )
        return rater.rate(usage, 0).amount

    return price


def differences(
    client: Client,
    database: str,
    rater: Rater,
    *,
    size_ms: int,
    start_ms: int,
    end_ms: int,
    tenant: str | None = None,
) -> tuple[int, list[Difference]]:
    """(windows compared, differences) for windows in [start, end)."""
    bounds = {"size_ms": size_ms, "start_ms": start_ms, "end_ms": end_ms, "tenant": tenant}
    recomputed = {
        key: quantity for key, (_, quantity) in recomputed_usage(client, database, **bounds).items()
    }
    rated = rated_usage(client, database, **bounds)
    return len(recomputed.keys() | rated.keys()), reconcile(
        recomputed, rated, _pricer(rater, size_ms)
    )


def check(
    settings: Settings, start_ms: int, end_ms: int, tenant: str | None
) -> tuple[int, list[Difference]]:
    """(windows compared, differences) for [start, end), with the catalogs of ``settings``."""
    meters = load_meter_catalog(settings.catalogs.meters)
    rater = Rater(load_pricing_catalog(settings.catalogs.pricing, meters))
    ch = settings.clickhouse
    client = connect(ch.dsn.get_secret_value(), ch.database)
    return differences(
        client,
        ch.database,
        rater,
        size_ms=settings.window.size,
        start_ms=start_ms,
        end_ms=end_ms,
        tenant=tenant,
    )


def _render(compared: int, differences: list[Difference]) -> str:
    if not differences:
        return f"reconciled: {compared} windows, no differences"
    lines = [f"{len(differences)} of {compared} windows differ:"]
    for d in differences:
        expected = "-" if d.expected is None else f"{d.expected.quantity} / {d.expected.amount}"
        rated = "-" if d.rated is None else f"{d.rated.quantity} / {d.rated.amount}"
        lines.append(
            f"  {d.problem.value:<15} {d.key.tenant} {d.key.meter} {d.key.group_key} "
            f"window {d.key.start_ms}: events say {expected}, rated {rated}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax reconcile``: 0 when all windows agree, 1 on differences, 2 on bad input."""
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
        compared, differences = check(settings, start, end, args.tenant)
    except ConfigError as exc:
        print(f"meterwax reconcile: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "windows": compared,
                    "differences": [
                        {
                            "problem": d.problem.value,
                            **d.key._asdict(),
                            "expected": None
                            if d.expected is None
                            else [str(v) for v in d.expected],
                            "rated": None if d.rated is None else [str(v) for v in d.rated],
                        }
                        for d in differences
                    ],
                },
                indent=2,
            )
        )
    else:
        print(_render(compared, differences))
    return 1 if differences else 0
