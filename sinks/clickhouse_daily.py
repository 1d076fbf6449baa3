"""A tenant's spend per UTC day, from the closed windows: the usage page's chart."""

from __future__ import annotations

from decimal import Decimal

from clickhouse_connect.driver.client import Client

from sinks.clickhouse_schema import quote_database

# A window's amount is what it changed the period's cost by, so days add up to
# the period's cost so far (final usage only: open windows are in Redis).
_DAILY = """
SELECT toUnixTimestamp(toStartOfDay(window_start)) * 1000 AS day, meter, sum(amount)
FROM {db}.window_usage
WHERE tenant = {{tenant:String}}
  AND window_start >= fromUnixTimestamp64Milli({{start:Int64}})
  AND window_start < fromUnixTimestamp64Milli({{end:Int64}})
GROUP BY day, meter
ORDER BY day, meter
"""


def daily_spend(
    client: Client, database: str, *, tenant: str, start_ms: int, end_ms: int
) -> list[tuple[int, str, Decimal]]:
    """(UTC day start ms, meter, amount) of ``tenant``'s windows starting in [start, end)."""
    result = client.query(
        _DAILY.format(db=quote_database(database)),
        parameters={"tenant": tenant, "start": start_ms, "end": end_ms},
    )
    return [(int(row[0]), str(row[1]), Decimal(row[2])) for row in result.result_rows]
