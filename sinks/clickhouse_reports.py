"""Read-side queries for estimates and invoices: a tenant's rated usage over a time range."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from operators.estimates import SegmentUsage
from operators.period_usage import WindowTotal
from operators.pricing import PricedEvent
from sinks.clickhouse_schema import quote_database

# window_usage holds each window's value (every flow incarnation's latest revision,
# combined), so every window counts once however many revisions, replayed copies
# or incarnations rated_windows holds.
_SEGMENTS = """
SELECT meter, price_version, plan_id, currency, sum(quantity), sum(amount)
FROM {db}.window_usage
WHERE tenant = {{tenant:String}}
  AND window_start >= fromUnixTimestamp64Milli({{start:Int64}})
  AND window_start < fromUnixTimestamp64Milli({{end:Int64}})
GROUP BY meter, price_version, plan_id, currency
ORDER BY meter, price_version, plan_id, currency
"""

# One row per tenant, meter and window start (group values and incarnations
# folded together): what gathering windows into billing periods needs. The
# distinct values and latest values let UNIQUE_COUNT and LATEST periods be told
# too; rows stored before incarnations carry no distinct values (counted apart).
_WINDOW_TOTALS = """
SELECT
    c.tenant, c.meter, c.plan_id, c.price_version, c.currency,
    toUnixTimestamp64Milli(c.window_start),
    sum(c.quantity), max(c.quantity), sum(c.amount),
    argMax(c.quantity, (c.latest_ms, c.quantity)), max(c.latest_ms),
    groupUniqArrayArray(c.distinct_values),
    countIf(length(c.distinct_values) = 0 AND c.quantity > 0)
FROM {db}.window_contributions AS c
GROUP BY c.tenant, c.meter, c.plan_id, c.price_version, c.currency, c.window_start
"""


# The event log of one meter over a range: one row per event (replayed copies of
# an event share its source and id).
_EVENTS = """
SELECT toUnixTimestamp64Milli(event_time), source, id, any(quantity)
FROM {db}.accepted_events
WHERE tenant = {{tenant:String}}
  AND meter = {{meter:String}}
  AND event_time >= fromUnixTimestamp64Milli({{start:Int64}})
  AND event_time < fromUnixTimestamp64Milli({{end:Int64}})
GROUP BY event_time, source, id
"""


def priced_events(
    client: Client, database: str, *, tenant: str, meter: str, start_ms: int, end_ms: int
) -> list[PricedEvent]:
    """``tenant``'s events of ``meter`` in [start_ms, end_ms), keyed by (source, id)."""
    result = client.query(
        _EVENTS.format(db=quote_database(database)),
        parameters={"tenant": tenant, "meter": meter, "start": start_ms, "end": end_ms},
    )
    return [
        # NUL sorts first, so the key orders by source, then id.
        PricedEvent(int(row[0]), f"{row[1]}\x00{row[2]}", Decimal(row[3]))
        for row in result.result_rows
    ]


def segment_usage(
    client: Client, database: str, *, tenant: str, start_ms: int, end_ms: int
) -> list[SegmentUsage]:
    """Per (meter, price version, plan, currency): summed quantity and amount of the
    windows of ``tenant`` that start in [start_ms, end_ms).

    Over a billing period, a segment's amount is the exact cost of its usage (a
    window's amount is what it changed the period's cost by). The quantity is the
    period's usage for SUM and COUNT meters only.
    """
    result = client.query(
        _SEGMENTS.format(db=quote_database(database)),
        parameters={"tenant": tenant, "start": start_ms, "end": end_ms},
    )
    return [
        SegmentUsage(
            meter=str(row[0]),
            price_version=str(row[1]),
            plan_id=str(row[2]),
            currency=str(row[3]),
            quantity=Decimal(row[4]),
            amount=Decimal(row[5]),
        )
        for row in result.result_rows
    ]


def window_totals(client: Client, database: str) -> Iterator[WindowTotal]:
    """Every stored window's latest revision, per tenant, meter and window start.

    Read block by block, for a consumer that folds them as they come: all rows
    at once take ~1 GiB per million windows.
    """
    with client.query_row_block_stream(_WINDOW_TOTALS.format(db=quote_database(database))) as rows:
        for block in rows:
            yield from map(_window_total, block)


def _window_total(row: Sequence[Any]) -> WindowTotal:
    return WindowTotal(
        tenant=str(row[0]),
        meter=str(row[1]),
        plan_id=str(row[2]),
        price_version=str(row[3]),
        currency=str(row[4]),
        window_start_ms=int(row[5]),
        quantity_sum=Decimal(row[6]),
        quantity_max=Decimal(row[7]),
        amount=Decimal(row[8]),
        latest=Decimal(row[9]),
        latest_ms=int(row[10]),
        distinct_values=frozenset(str(value) for value in row[11]),
        distinct_known=int(row[12]) == 0,
    )


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """One meter's windows gathered into one bucket and one combination of group values."""

    meter: str
    bucket: int
    groups: tuple[str | None, ...]
    currency: str
    quantity_sum: Decimal
    quantity_max: Decimal
    amount: Decimal


# Bucket expressions by window size: epoch milliseconds of the bucket's start in
# the time zone, or (period) the index of the billing period in {bounds}.
BUCKETS = {
    "minute": "toUnixTimestamp(toStartOfMinute(window_start, {tz:String})) * 1000",
    "hour": "toUnixTimestamp(toStartOfHour(window_start, {tz:String})) * 1000",
    "day": "toUnixTimestamp(toStartOfDay(window_start, {tz:String})) * 1000",
    "period": (
        "arrayFirstIndex(b -> b > toUnixTimestamp64Milli(window_start), {bounds:Array(Int64)})"
    ),
}


def usage_buckets(
    client: Client,
    database: str,
    *,
    tenant: str,
    start_ms: int,
    end_ms: int,
    bucket: str,
    time_zone: str,
    bounds: list[int],
    group_by: list[str],
    filters: dict[str, list[str]],
) -> list[UsageBucket]:
    """The windows of ``tenant`` starting in [start_ms, end_ms), per meter, bucket, currency
    and the values of ``group_by``, among windows whose group values pass ``filters``.

    Group names and values go in as query parameters, never into the SQL text.
    """
    parameters: dict[str, object] = {
        "tenant": tenant,
        "start": start_ms,
        "end": end_ms,
        "tz": time_zone,
        "bounds": bounds,
    }
    groups = []
    for n, name in enumerate(group_by):
        parameters[f"g{n}"] = name
        groups.append(
            f"if(mapContains(group_values, {{g{n}:String}}), group_values[{{g{n}:String}}], NULL)"
        )
    where = []
    for n, (name, values) in enumerate(sorted(filters.items())):
        parameters[f"f{n}"] = name
        parameters[f"v{n}"] = values
        where.append(
            f"AND mapContains(group_values, {{f{n}:String}}) "
            f"AND group_values[{{f{n}:String}}] IN {{v{n}:Array(String)}}"
        )
    group_columns = "".join(f", {g} AS g{n}" for n, g in enumerate(groups))
    group_keys = "".join(f", g{n}" for n in range(len(groups)))
    sql = f"""
SELECT meter, {BUCKETS[bucket]} AS bucket{group_columns}, currency,
       sum(quantity), max(quantity), sum(amount)
FROM {quote_database(database)}.window_usage
WHERE tenant = {{tenant:String}}
  AND window_start >= fromUnixTimestamp64Milli({{start:Int64}})
  AND window_start < fromUnixTimestamp64Milli({{end:Int64}})
  {" ".join(where)}
GROUP BY meter, bucket{group_keys}, currency
ORDER BY meter, bucket{group_keys}, currency
"""
    result = client.query(sql, parameters=parameters)
    width = len(groups)
    return [
        UsageBucket(
            meter=str(row[0]),
            bucket=int(row[1]),
            groups=tuple(None if value is None else str(value) for value in row[2 : 2 + width]),
            currency=str(row[2 + width]),
            quantity_sum=Decimal(row[3 + width]),
            quantity_max=Decimal(row[4 + width]),
            amount=Decimal(row[5 + width]),
        )
        for row in result.result_rows
    ]
