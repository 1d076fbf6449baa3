"""A tenant's usage over a time range, by window (minute, hour, day or billing period) and
group values: what ``GET /v1/usage`` answers.

``final`` amounts come from the closed windows in ClickHouse, bucketed by their
start in ``window_time_zone``; ``provisional`` is what the live counters in
Redis add on top for the billing period holding now (usage in windows still
open), per meter: the two are never mixed. Quantities follow the meter's
aggregation: summed for SUM and COUNT, the peak for MAX; stored windows cannot
tell a bucket's UNIQUE_COUNT or LATEST (null), their amounts are exact all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_connect.driver.exceptions import ClickHouseError

from config.display import iso_utc as iso
from config.meters import Aggregation
from operators.periods import billing_period
from reports.usage import SourceUnavailable, UsageReports, build_estimate, exact
from sinks.clickhouse_reports import usage_buckets

WINDOW_SIZES = ("minute", "hour", "day", "period")
_FIXED_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
# At most this many buckets per meter and group: a bounded answer per request.
MAX_BUCKETS = 10_000
_MAX_PERIODS = 1_200
_TIME_ZONE_CHARS = 64


class UsageQueryError(ValueError):
    """A usage query that cannot be answered as asked; ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """What to report: [start_ms, end_ms), bucket size and zone, group-by names and filters."""

    tenant: str
    start_ms: int
    end_ms: int
    window_size: str
    time_zone: str
    group_by: tuple[str, ...]
    filters: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One meter's final usage in one bucket, for one combination of group values."""

    meter: str
    start_ms: int
    end_ms: int
    groups: tuple[tuple[str, str | None], ...]
    quantity: Decimal | None
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    """The rows, and the provisional amounts of the billing period holding now."""

    query: UsageQuery
    now_ms: int
    rows: tuple[UsageRow, ...]
    totals: tuple[tuple[str, str, Decimal | None, Decimal], ...]
    provisional: tuple[dict[str, Any], ...]


def check_time_zone(name: str) -> str:
    """``name`` if it is an IANA time zone; UsageQueryError naming window_time_zone if not."""
    try:
        if len(name) > _TIME_ZONE_CHARS or name.startswith(("/", ".")):
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageQueryError(
            "window_time_zone", f"{name!r} is not an IANA time zone; write e.g. Europe/Berlin"
        ) from None
    return name


def default_range(reports: UsageReports, tenant: str, now_ms: int) -> tuple[int, int]:
    """The tenant's billing period holding now: the range when ``from``/``to`` are left out."""
    return reports.plan_and_period(tenant, None, now_ms)[1]


def build_usage(
    reports: UsageReports, query: UsageQuery, now_ms: int, flow_window_ms: int
) -> UsageReport:
    """The usage ``query`` asks for, at ``now_ms``; ``flow_window_ms`` is the finest window
    stored (a smaller window_size could not be told)."""
    if query.end_ms <= query.start_ms:
        raise UsageQueryError("to", "must be later than from")
    subscription = reports.pricing.subscription_for(query.tenant)
    if subscription is None:
        # plan_and_period raises the error the API turns into 404.
        reports.plan_and_period(query.tenant, None, now_ms)
        raise AssertionError("unreachable")
    bounds: list[int] = []
    if query.window_size == "period":
        bounds = _period_bounds(query, subscription.anchor_day, subscription.timezone)
    else:
        size = _FIXED_MS[query.window_size]
        if size < flow_window_ms:
            raise UsageQueryError(
                "window_size",
                f"{query.window_size} is finer than the stored windows "
                f"({flow_window_ms // 1000} s); ask for a larger window_size",
            )
        if (query.end_ms - query.start_ms) // size > MAX_BUCKETS:
            raise UsageQueryError(
                "window_size",
                f"more than {MAX_BUCKETS} {query.window_size} windows between from and to; "
                "narrow the range or ask for a larger window_size",
            )
    try:
        with reports.lock:
            buckets = usage_buckets(
                reports.client(),
                reports.database,
                tenant=query.tenant,
                start_ms=query.start_ms,
                end_ms=query.end_ms,
                bucket=query.window_size,
                time_zone=query.time_zone,
                bounds=bounds,
                group_by=list(query.group_by),
                filters={name: list(values) for name, values in query.filters.items()},
            )
    except (ClickHouseError, OSError) as exc:
        raise SourceUnavailable(
            f"cannot read usage from ClickHouse: {type(exc).__name__}"
        ) from None
    zone = ZoneInfo(query.time_zone)
    rows = []
    for b in buckets:
        if query.window_size == "period":
            # arrayFirstIndex is 1-based: bucket i is [bounds[i - 2], bounds[i - 1]).
            start, end = bounds[b.bucket - 2], bounds[b.bucket - 1]
        else:
            start, end = b.bucket, _bucket_end(b.bucket, query.window_size, zone)
        aggregation = reports.aggregations.get(b.meter)
        rows.append(
            UsageRow(
                meter=b.meter,
                start_ms=start,
                end_ms=end,
                groups=tuple(zip(query.group_by, b.groups, strict=True)),
                quantity=_quantity(aggregation, b.quantity_sum, b.quantity_max),
                amount=b.amount,
                currency=b.currency,
            )
        )
    rows_t = tuple(rows)
    return UsageReport(
        query,
        now_ms,
        rows_t,
        _totals(rows_t, reports.aggregations),
        _provisional(reports, query, now_ms),
    )


def _quantity(aggregation: Aggregation | None, total: Decimal, peak: Decimal) -> Decimal | None:
    if aggregation in (Aggregation.SUM, Aggregation.COUNT):
        return total
    if aggregation is Aggregation.MAX:
        return peak
    return None


def _period_bounds(query: UsageQuery, anchor_day: int, timezone: str) -> list[int]:
    start, end = billing_period(query.start_ms, anchor_day, timezone)
    bounds = [start, end]
    while bounds[-1] < query.end_ms:
        if len(bounds) > _MAX_PERIODS:
            raise UsageQueryError(
                "to", f"more than {_MAX_PERIODS} billing periods between from and to"
            )
        bounds.append(billing_period(bounds[-1], anchor_day, timezone)[1])
    return bounds


def _bucket_end(start_ms: int, window_size: str, zone: ZoneInfo) -> int:
    if window_size != "day":
        return start_ms + _FIXED_MS[window_size]
    # A local day: 23, 24 or 25 hours where daylight saving changes.
    local = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(zone)
    following = (local + timedelta(days=1)).date()
    midnight = datetime(following.year, following.month, following.day, tzinfo=zone)
    return int(midnight.timestamp()) * 1000


def _provisional(
    reports: UsageReports, query: UsageQuery, now_ms: int
) -> tuple[dict[str, Any], ...]:
    period_start, period_end = default_range(reports, query.tenant, now_ms)
    if query.group_by or query.filters or reports.redis is None:
        # Live counters hold no group values: they cannot be split or filtered.
        return ()
    if not (query.start_ms < period_end and period_start < query.end_ms):
        return ()
    report = build_estimate(reports, query.tenant, None, now_ms)
    return tuple(
        {
            "meter": m.meter,
            "period": {"start": iso(period_start), "end": iso(period_end)},
            "amount": exact(m.provisional),
            "currency": m.currency,
            "live": m.live.value,
        }
        for m in report.meters
    )


def _totals(
    rows: tuple[UsageRow, ...], aggregations: Mapping[str, Aggregation]
) -> tuple[tuple[str, str, Decimal | None, Decimal], ...]:
    """Per meter and currency over all rows: quantity (as the meter aggregates) and amount."""
    totals: dict[tuple[str, str], tuple[Decimal | None, Decimal]] = {}
    for row in rows:
        quantity, amount = totals.get((row.meter, row.currency), (Decimal(0), Decimal(0)))
        if quantity is None or row.quantity is None:
            quantity = None
        elif aggregations.get(row.meter) is Aggregation.MAX:
            quantity = max(quantity, row.quantity)
        else:
            quantity += row.quantity
        totals[row.meter, row.currency] = (quantity, amount + row.amount)
    return tuple((m, c, q, a) for (m, c), (q, a) in sorted(totals.items()))


def usage_json(report: UsageReport) -> dict[str, Any]:
    """The report as JSON-ready data; amounts and quantities are exact decimal strings."""
    query = report.query
    return {
        "tenant": query.tenant,
        "from": iso(query.start_ms),
        "to": iso(query.end_ms),
        "window_size": query.window_size,
        "window_time_zone": query.time_zone,
        "group_by": list(query.group_by),
        "as_of": iso(report.now_ms),
        "final": [
            {
                "meter": row.meter,
                "window_start": iso(row.start_ms),
                "window_end": iso(row.end_ms),
                "groups": dict(row.groups),
                "quantity": None if row.quantity is None else exact(row.quantity),
                "amount": exact(row.amount),
                "currency": row.currency,
            }
            for row in report.rows
        ],
        "totals": [
            {
                "meter": meter,
                "quantity": None if quantity is None else exact(quantity),
                "amount": exact(amount),
                "currency": currency,
            }
            for meter, currency, quantity, amount in report.totals
        ],
        "provisional": list(report.provisional),
    }
