"""``meterwax estimate``: a tenant's spend in a billing period so far, and its projection.

Also home of ``UsageReports``, the read side that ``meterwax invoice`` and the
HTTP API share: the catalogs, ClickHouse (closed windows) and Redis (live
counters), opened once from the settings. Nothing here writes anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from config.errors import ConfigError, error_report
from config.meter_catalog import load_meter_catalog
from config.meters import Aggregation
from config.pricing import Plan, PricingCatalog
from config.pricing_catalog import load_pricing_catalog
from config.redaction import redact_url
from config.settings import Settings, load_settings
from dataflows.display import decimal_text as plain
from dataflows.display import iso_utc as iso
from operators.estimates import (
    CurrencyMismatchError,
    Estimate,
    LiveState,
    LiveUsage,
    PeriodError,
    SegmentUsage,
    estimate,
    resolve_period,
)
from sinks.clickhouse import SinkError, connect, redact_dsn
from sinks.clickhouse_reports import segment_usage
from sinks.redis_client import redis_from_url
from sinks.redis_live_usage import LiveUsageError, read_live_usage

# A report is interactive: give up on an unreachable Redis quickly.
_REDIS_TIMEOUT_S = 5.0
ESTIMATE_NOTE = (
    "usage amounts at full precision, before the invoice's minimums, fixed fee and "
    "minimum commitment"
)


class UnknownTenantError(LookupError):
    """The tenant has no subscription and the catalog names no default plan (exit 2, HTTP 404)."""


class SourceUnavailable(Exception):
    """ClickHouse or Redis could not be read (exit 1, HTTP 503); never holds a password."""


@dataclass
class UsageReports:
    """Catalogs plus the stores reports read; safe to share between threads."""

    pricing: PricingCatalog
    aggregations: Mapping[str, Aggregation]
    clickhouse: Client
    database: str
    redis: redis.Redis | None
    key_prefix: str
    # clickhouse-connect clients run one query at a time (one session; chDB one engine).
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> UsageReports:
        """Load the catalogs and open the stores of ``settings`` (raises ConfigError)."""
        meters = load_meter_catalog(settings.catalogs.meters)
        pricing = load_pricing_catalog(settings.catalogs.pricing, meters)
        ch = settings.clickhouse
        dsn = ch.dsn.get_secret_value()
        try:
            client = connect(dsn, ch.database)
        except ValueError as exc:
            raise ConfigError(f"clickhouse.dsn: {exc}") from None
        except SinkError as exc:
            raise SourceUnavailable(str(exc)) from None
        return cls(
            pricing=pricing,
            aggregations={meter.slug: meter.aggregation for meter in meters.meters},
            clickhouse=client,
            database=ch.database,
            redis=_redis_client(settings),
            key_prefix=settings.redis.key_prefix,
        )

    def plan_and_period(
        self, tenant: str, period: str | None, now_ms: int
    ) -> tuple[Plan, tuple[int, int]]:
        """The tenant's plan and the billing period ``period`` names (see resolve_period).

        Raises UnknownTenantError, or PeriodError for a period that is not valid.
        """
        subscription = self.pricing.subscription_for(tenant)
        if subscription is None:
            raise UnknownTenantError(
                f"tenant {tenant!r} has no subscription in the pricing catalog, "
                "which names no default_plan"
            )
        bounds = resolve_period(period, subscription.anchor_day, subscription.timezone, now_ms)
        return self.pricing.plans[subscription.plan], bounds

    def closed_usage(self, tenant: str, period: tuple[int, int]) -> list[SegmentUsage]:
        """The tenant's rated windows starting in ``period``, per meter and price version."""
        try:
            with self._lock:
                return segment_usage(
                    self.clickhouse,
                    self.database,
                    tenant=tenant,
                    start_ms=period[0],
                    end_ms=period[1],
                )
        except (ClickHouseError, OSError) as exc:
            message = f"cannot read usage from ClickHouse: {_first_line(exc)}"
            raise SourceUnavailable(message) from None

    def live_usage(self, tenant: str, period_start_ms: int) -> dict[str, LiveUsage]:
        """The tenant's live counters for the period (none when Redis is not configured)."""
        if self.redis is None:
            return {}
        try:
            return read_live_usage(self.redis, self.key_prefix, tenant, period_start_ms)
        except redis.RedisError as exc:
            raise SourceUnavailable(
                f"cannot read live usage from Redis: {redact_url(_first_line(exc))}"
            ) from None

    def close(self) -> None:
        """Close the ClickHouse and Redis clients."""
        self.clickhouse.close()
        if self.redis is not None:
            self.redis.close()


def build_estimate(reports: UsageReports, tenant: str, period: str | None, now_ms: int) -> Estimate:
    """The tenant's estimate for the period ``period`` names (default: the one holding now)."""
    plan, bounds = reports.plan_and_period(tenant, period, now_ms)
    return estimate(
        tenant,
        plan,
        bounds,
        now_ms=now_ms,
        final=reports.closed_usage(tenant, bounds),
        live=reports.live_usage(tenant, bounds[0]),
        aggregations=reports.aggregations,
    )


def estimate_json(report: Estimate) -> dict[str, Any]:
    """The estimate as JSON-ready data; amounts are exact decimal strings."""
    return {
        "tenant": report.tenant,
        "plan": report.plan_id,
        "currency": report.currency,
        "period": {"start": iso(report.period_start_ms), "end": iso(report.period_end_ms)},
        "as_of": iso(report.now_ms),
        "elapsed_fraction": plain(report.elapsed_fraction),
        "meters": [
            {
                "meter": m.meter,
                "usage": None if m.quantity is None else exact(m.quantity),
                "final": exact(m.final),
                "provisional": exact(m.provisional),
                "total": exact(m.total),
                "projection": exact(m.projection),
                "currency": m.currency,
                "live": m.live.value,
            }
            for m in report.meters
        ],
        "total": exact(report.total),
        "projection": exact(report.projection),
        "note": ESTIMATE_NOTE,
    }


def add_source_options(parser: argparse.ArgumentParser, *, live: bool = True) -> None:
    """The settings flags reports take (as for ``run``); ``live`` adds ``--redis-url``."""
    parser.add_argument("--config", type=Path, help="YAML settings file, as for `run`")
    parser.add_argument("--dsn", dest="clickhouse.dsn", help="chdb://PATH or http(s)://...")
    parser.add_argument("--database", dest="clickhouse.database")
    parser.add_argument("--meters", dest="catalogs.meters", help="meter catalog YAML")
    parser.add_argument("--pricing", dest="catalogs.pricing", help="pricing catalog YAML")
    if live:
        parser.add_argument(
            "--redis-url",
            dest="redis.url",
            help="redis://[:password@]host:port/db of the live counters (default: none)",
        )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from ``--config``, the environment and the dotted flags (raises ConfigError)."""
    overrides: dict[str, dict[str, Any]] = {}
    for name, value in vars(args).items():
        if "." in name and value is not None:
            section, key = name.split(".", 1)
            overrides.setdefault(section, {})[key] = value
    return load_settings(args.config, overrides)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``meterwax estimate``."""
    parser = sub.add_parser(
        "estimate",
        help="a tenant's spend in a billing period so far, and its projection",
        description="Per meter: usage, the amount of closed windows (final), what the live "
        "counters add (provisional), their total and a linear projection to the end of the "
        "period. Amounts at full precision, before minimums, fixed fee and commitment. "
        "Reads only.",
    )
    parser.add_argument("--tenant", required=True, help="the tenant (CloudEvents subject)")
    parser.add_argument(
        "--period",
        help="YYYY-MM (the period starting that month) or an RFC 3339 instant inside it; "
        "default now",
    )
    add_source_options(parser)
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax estimate``: 0 printed, 1 if a store cannot be read, 2 on bad input."""
    return run_report(
        "estimate",
        args,
        lambda reports, now_ms: _output(build_estimate(reports, args.tenant, args.period, now_ms)),
    )


def run_report(
    name: str,
    args: argparse.Namespace,
    report: Callable[[UsageReports, int], tuple[dict[str, Any], str]],
) -> int:
    """Open the stores, run ``report(reports, now_ms) -> (json data, text)`` and print it.

    Shared by ``estimate`` and ``invoice``: the same errors, exit codes and output.
    """
    prefix = f"meterwax {name}"
    try:
        reports = UsageReports.from_settings(settings_from(args))
    except ConfigError as exc:
        print(error_report(f"{prefix}: configuration error", exc), file=sys.stderr)
        return 2
    except SourceUnavailable as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    try:
        data, text = report(reports, args.clock.now_ms())
    except PeriodError as exc:
        print(f"{prefix}: --period: {exc}", file=sys.stderr)
        return 2
    except UnknownTenantError as exc:
        print(f"{prefix}: --tenant: {exc}", file=sys.stderr)
        return 2
    except (SourceUnavailable, CurrencyMismatchError, LiveUsageError) as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    finally:
        reports.close()
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _output(report: Estimate) -> tuple[dict[str, Any], str]:
    return estimate_json(report), _render(report)


def _render(report: Estimate) -> str:
    percent = (report.elapsed_fraction * 100).quantize(Decimal("0.1"))
    rows = [["meter", "usage", "final", "provisional", "total", "projection", "currency"]]
    rows += [
        [
            m.meter,
            "-" if m.quantity is None else exact(m.quantity),
            exact(m.final),
            exact(m.provisional),
            exact(m.total),
            exact(m.projection),
            m.currency,
        ]
        for m in report.meters
    ]
    rows.append(
        ["all meters", "", "", "", exact(report.total), exact(report.projection), report.currency]
    )
    lines = [
        f"estimate for {report.tenant}, plan {report.plan_id} ({report.currency}), period "
        f"{iso(report.period_start_ms)} to {iso(report.period_end_ms)}, {percent}% elapsed",
        *table(rows, "<>>>>><"),
    ]
    if not report.meters:
        lines.append("  (no usage in this period)")
    lagging = [m.meter for m in report.meters if m.live is LiveState.LAGGING]
    if lagging:
        lines.append(
            f"live counters behind the closed windows for {', '.join(lagging)}: "
            "provisional shown as 0 until they catch up"
        )
    lines.append(ESTIMATE_NOTE)
    return "\n".join(lines)


def table(rows: list[list[str]], align: str) -> list[str]:
    """Rows as indented text columns; ``align`` has one ``<`` (left) or ``>`` per column."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(align))]
    return [
        "  "
        + "  ".join(
            f"{cell:{side}{width}}" for cell, side, width in zip(row, align, widths, strict=True)
        ).rstrip()
        for row in rows
    ]


def exact(value: Decimal) -> str:
    """``value`` exactly, without exponent notation or trailing fractional zeros."""
    return plain(value, trim=True)


def _redis_client(settings: Settings) -> redis.Redis | None:
    url = settings.redis.url
    if url is None:
        return None
    try:
        return redis_from_url(url.get_secret_value(), settings.redis.password(), _REDIS_TIMEOUT_S)
    except ValueError as exc:
        raise ConfigError(f"redis.url: {exc}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return redact_dsn(text)
