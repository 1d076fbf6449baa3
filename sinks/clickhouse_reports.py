"""Read-side queries for estimates and invoices: a tenant's rated usage over a time range."""

from __future__ import annotations

from decimal import Decimal

from clickhouse_connect.driver.client import Client

from operators.estimates import SegmentUsage
from sinks.clickhouse_schema import quote_database

# window_usage holds each window's latest revision, so every window counts once
# however many revisions (or replayed copies of them) rated_windows holds.
_SEGMENTS = """
SELECT meter, price_version, plan_id, currency, sum(quantity), sum(amount)
FROM {db}.window_usage
WHERE tenant = {{tenant:String}}
  AND window_start >= fromUnixTimestamp64Milli({{start:Int64}})
  AND window_start < fromUnixTimestamp64Milli({{end:Int64}})
GROUP BY meter, price_version, plan_id, currency
ORDER BY meter, price_version, plan_id, currency
"""


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
