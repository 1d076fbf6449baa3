"""Read-side queries for reconciliation: usage recomputed from the event log, and as rated."""

from __future__ import annotations

from decimal import Decimal

from clickhouse_connect.driver.client import Client

from operators.reconcile import RatedWindowTotals, RecomputedWindow, WindowKey
from sinks.clickhouse_schema import quote_database

# One value per window, picked by the meter's aggregation, from one row per
# (tenant, meter, source, id): replays append copies to the log.
_RECOMPUTE = """
SELECT
    tenant, meter, group_key,
    intDiv(toUnixTimestamp64Milli(event_time), {{size:Int64}}) * {{size:Int64}} AS start_ms,
    any(aggregation) AS aggregation,
    multiIf(
        aggregation = 'SUM', sum(quantity),
        aggregation = 'COUNT', toDecimal128(count(), 9),
        aggregation = 'MAX', max(quantity),
        aggregation = 'UNIQUE_COUNT', toDecimal128(uniqExact(distinct_value), 9),
        argMax(quantity, tuple(event_time, quantity))
    ) AS quantity,
    if(aggregation = 'UNIQUE_COUNT', groupUniqArray(distinct_value), []) AS distinct_values,
    toUnixTimestamp64Milli(max(event_time)) AS latest_ms
FROM
(
    SELECT *
    FROM {db}.accepted_events
    WHERE event_time >= fromUnixTimestamp64Milli({{start:Int64}})
      AND event_time < fromUnixTimestamp64Milli({{end:Int64}})
      AND ({{tenant:Nullable(String)}} IS NULL OR tenant = {{tenant:Nullable(String)}})
    LIMIT 1 BY tenant, meter, source, id
)
GROUP BY tenant, meter, group_key, start_ms
"""

_RATED = """
SELECT
    tenant, meter, group_key, toUnixTimestamp64Milli(window_start), quantity, amount,
    price_version
FROM {db}.window_usage
WHERE window_start >= fromUnixTimestamp64Milli({{start:Int64}})
  AND window_start < fromUnixTimestamp64Milli({{end:Int64}})
  AND ({{tenant:Nullable(String)}} IS NULL OR tenant = {{tenant:Nullable(String)}})
"""


def _bounds(size_ms: int, start_ms: int, end_ms: int) -> tuple[int, int]:
    """The range widened to whole windows."""
    return start_ms - start_ms % size_ms, end_ms + (-end_ms) % size_ms


def recomputed_usage(
    client: Client, database: str, *, size_ms: int, start_ms: int, end_ms: int, tenant: str | None
) -> dict[WindowKey, RecomputedWindow]:
    """Every window in [start, end) as the event log says it should be."""
    start, end = _bounds(size_ms, start_ms, end_ms)
    result = client.query(
        _RECOMPUTE.format(db=quote_database(database)),
        parameters={"size": size_ms, "start": start, "end": end, "tenant": tenant},
    )
    return {
        WindowKey(row[0], row[1], row[2], int(row[3])): RecomputedWindow(
            str(row[4]), Decimal(row[5]), frozenset(row[6]), int(row[7])
        )
        for row in result.result_rows
    }


def rated_usage(
    client: Client, database: str, *, size_ms: int, start_ms: int, end_ms: int, tenant: str | None
) -> dict[WindowKey, RatedWindowTotals]:
    """Every window in [start, end) as rated (latest revision)."""
    start, end = _bounds(size_ms, start_ms, end_ms)
    result = client.query(
        _RATED.format(db=quote_database(database)),
        parameters={"start": start, "end": end, "tenant": tenant},
    )
    return {
        WindowKey(row[0], row[1], row[2], int(row[3])): RatedWindowTotals(
            Decimal(row[4]), Decimal(row[5]), str(row[6])
        )
        for row in result.result_rows
    }
