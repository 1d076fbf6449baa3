"""The read side of usage: estimates of a period so far, from closed windows and live counters.

``UsageReports`` opens the catalogs, ClickHouse (closed windows) and Redis (live
counters) once from the settings; ``meterwax estimate``, ``meterwax invoice`` and
the HTTP API read through it. Nothing here writes anywhere, parses flags or prints.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from config.display import decimal_text as plain
from config.display import iso_utc as iso
from config.errors import ConfigError
from config.meter_catalog import load_meter_catalog
from config.meters import Aggregation
from config.pricing import PercentagePrice, Plan, PricingCatalog
from config.pricing_catalog import load_pricing_catalog
from config.redaction import redact_url
from config.settings import Settings
from operators.estimates import (
    Estimate,
    LiveReading,
    PricedFrom,
    SegmentUsage,
    estimate,
    resolve_period,
)
from operators.pricing import PricedEvent
from sinks.clickhouse import SinkError, connect, redact_dsn
from sinks.clickhouse_daily import daily_spend
from sinks.clickhouse_reports import priced_events, segment_usage
from sinks.redis_client import redis_from_url
from sinks.redis_live_usage import read_live_usage

# A report is interactive: give up on an unreachable Redis quickly.
_REDIS_TIMEOUT_S = 5.0
ESTIMATE_NOTE = (
    "usage amounts at full precision, before the invoice's minimums, fixed fee and "
    "minimum commitment"
)
# Said for an open period with a meter priced per event (its amount is all provisional).
PER_EVENT_NOTE = (
    "meters priced from events: the exact price of the events accepted so far, as the "
    "invoice prices them, provisional until the period ends (a late event can move "
    "free units)"
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
    # None until ClickHouse could be reached: ``client()`` connects on first use.
    clickhouse: Client | None
    database: str
    redis: redis.Redis | None
    key_prefix: str
    # clickhouse-connect clients run one query at a time (one session; chDB one engine):
    # every query on ``clickhouse`` holds it.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    connect_clickhouse: Callable[[], Client] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, keep_trying: bool = False) -> UsageReports:
        """Load the catalogs and open the stores of ``settings`` (raises ConfigError).

        An unreachable ClickHouse raises SourceUnavailable, or with ``keep_trying``
        (a server behind a readiness probe) is connected on first use instead.
        """
        meters = load_meter_catalog(settings.catalogs.meters)
        pricing = load_pricing_catalog(settings.catalogs.pricing, meters)
        ch = settings.clickhouse
        dsn = ch.dsn.get_secret_value()
        client: Client | None = None
        try:
            client = connect(dsn, ch.database)
        except ValueError as exc:
            raise ConfigError(f"clickhouse.dsn: {exc}") from None
        except SinkError as exc:
            if not keep_trying:
                raise SourceUnavailable(str(exc)) from None
        return cls(
            pricing=pricing,
            aggregations={meter.slug: meter.aggregation for meter in meters.meters},
            clickhouse=client,
            database=ch.database,
            redis=_redis_client(settings),
            key_prefix=settings.redis.key_prefix,
            connect_clickhouse=functools.partial(connect, dsn, ch.database),
        )

    def client(self) -> Client:
        """The ClickHouse client, connected now if it was not yet; call it holding ``lock``.

        Raises SourceUnavailable while ClickHouse cannot be reached.
        """
        if self.clickhouse is None:
            if self.connect_clickhouse is None:
                raise SourceUnavailable("ClickHouse: no client")
            try:
                self.clickhouse = self.connect_clickhouse()
            except (SinkError, ValueError) as exc:
                raise SourceUnavailable(str(exc)) from None
        return self.clickhouse

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

    @contextmanager
    def _reading(self, what: str) -> Iterator[Client]:
        """The ClickHouse client, held alone; a failure is SourceUnavailable naming ``what``."""
        try:
            with self.lock:
                yield self.client()
        except (ClickHouseError, OSError) as exc:
            message = f"cannot read {what} from ClickHouse: {_first_line(exc)}"
            raise SourceUnavailable(message) from None

    def closed_usage(self, tenant: str, period: tuple[int, int]) -> list[SegmentUsage]:
        """The tenant's rated windows starting in ``period``, per meter and price version."""
        with self._reading("usage") as client:
            return segment_usage(
                client, self.database, tenant=tenant, start_ms=period[0], end_ms=period[1]
            )

    def per_event_usage(
        self, tenant: str, plan: Plan, period: tuple[int, int]
    ) -> dict[str, list[PricedEvent]]:
        """The period's events of every meter a version of ``plan`` prices per event."""
        meters = sorted(
            {
                slug
                for version in plan.versions
                for slug, price in version.prices.items()
                if isinstance(price.model, PercentagePrice) and price.model.per_event
            }
        )
        with self._reading("events") as client:
            return {
                meter: priced_events(
                    client,
                    self.database,
                    tenant=tenant,
                    meter=meter,
                    start_ms=period[0],
                    end_ms=period[1],
                )
                for meter in meters
            }

    def daily_spend(self, tenant: str, period: tuple[int, int]) -> list[tuple[int, str, Decimal]]:
        """(UTC day, meter, amount) of the tenant's rated windows in ``period``."""
        with self._reading("daily spend") as client:
            return daily_spend(
                client, self.database, tenant=tenant, start_ms=period[0], end_ms=period[1]
            )

    def live_usage(self, tenant: str, period_start_ms: int) -> dict[str, LiveReading]:
        """The tenant's live counters for the period (none when Redis is not configured)."""
        if self.redis is None:
            return {}
        try:
            return read_live_usage(self.redis, self.key_prefix, tenant, period_start_ms)
        except redis.RedisError as exc:
            raise SourceUnavailable(
                f"cannot read live usage from Redis: {redact_url(_first_line(exc))}"
            ) from None

    def check_clickhouse(self) -> None:
        """Raise SourceUnavailable unless ClickHouse answers a query."""
        try:
            with self.lock:
                self.client().query("SELECT 1")
        except (ClickHouseError, OSError) as exc:
            raise SourceUnavailable(f"ClickHouse: {_first_line(exc)}") from None

    def check_redis(self) -> None:
        """Raise SourceUnavailable unless Redis (when configured) answers PING."""
        if self.redis is None:
            return
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise SourceUnavailable(f"Redis: {redact_url(_first_line(exc))}") from None

    def close(self) -> None:
        """Close the ClickHouse and Redis clients."""
        if self.clickhouse is not None:
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
        events=reports.per_event_usage(tenant, plan, bounds),
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
                "priced_from": m.priced_from.value,
            }
            for m in report.meters
        ],
        "total": exact(report.total),
        "projection": exact(report.projection),
        "note": estimate_note(report),
    }


def estimate_note(report: Estimate) -> str:
    """What the estimate's amounts include, and what is provisional in them."""
    open_period = report.now_ms < report.period_end_ms
    if open_period and any(m.priced_from is PricedFrom.EVENTS for m in report.meters):
        return f"{ESTIMATE_NOTE}; {PER_EVENT_NOTE}"
    return ESTIMATE_NOTE


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
