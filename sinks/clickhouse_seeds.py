"""What other flow incarnations stored for billing periods: the seed of a new flow's state."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from decimal import Decimal

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from config.meters import Aggregation
from operators.contributions import Contribution
from operators.period_rating import PeriodKey, PeriodRef
from sinks.clickhouse import SinkError, connect, redact_dsn
from sinks.clickhouse_schema import quote_database

# Every window contribution of another incarnation in the requested periods,
# combined per period and price version; Python picks by the meter's aggregation.
_PERIODS = """
SELECT
    c.tenant,
    c.meter,
    {{periods:Array(Tuple(String, String, Int64, Int64))}}[period].3 AS period_start,
    c.price_version,
    sum(c.quantity),
    max(c.quantity),
    argMax(c.quantity, (c.latest_ms, c.quantity)),
    max(c.latest_ms),
    groupUniqArrayArray(c.distinct_values),
    sum(c.amount)
FROM
(
    SELECT
        *,
        arrayFirstIndex(
            p -> p.1 = tenant AND p.2 = meter
                AND toUnixTimestamp64Milli(window_start) >= p.3
                AND toUnixTimestamp64Milli(window_start) < p.4,
            {{periods:Array(Tuple(String, String, Int64, Int64))}}
        ) AS period
    FROM {db}.window_contributions
    WHERE incarnation != {{incarnation:String}}
      AND tenant IN {{tenants:Array(String)}}
      AND window_start >= fromUnixTimestamp64Milli({{start:Int64}})
      AND window_start < fromUnixTimestamp64Milli({{end:Int64}})
) AS c
WHERE period > 0
GROUP BY c.tenant, c.meter, period, c.price_version
"""


def stored_periods(
    client: Client,
    database: str,
    *,
    incarnation: str,
    periods: Sequence[PeriodRef],
    aggregations: Mapping[str, Aggregation],
) -> dict[PeriodKey, Contribution]:
    """Usage and amounts of ``periods`` stored by incarnations other than ``incarnation``.

    One entry per (tenant, meter, period start, price version) that has any:
    the windows of all other incarnations combined with the meter's aggregation.
    """
    if not periods:
        return {}
    result = client.query(
        _PERIODS.format(db=quote_database(database)),
        parameters={
            "periods": [tuple(p) for p in periods],
            "incarnation": incarnation,
            "tenants": sorted({p.tenant for p in periods}),
            "start": min(p.start_ms for p in periods),
            "end": max(p.end_ms for p in periods),
        },
    )
    found: dict[PeriodKey, Contribution] = {}
    for (
        tenant,
        meter,
        start,
        version,
        total,
        most,
        latest,
        latest_ms,
        values,
        amount,
    ) in result.result_rows:
        aggregation = aggregations.get(meter)
        if aggregation is None:
            continue
        found[PeriodKey(str(tenant), str(meter), int(start), str(version))] = {
            Aggregation.MAX: Contribution(Decimal(most), Decimal(amount)),
            Aggregation.LATEST: Contribution(Decimal(latest), Decimal(amount), int(latest_ms)),
            Aggregation.UNIQUE_COUNT: Contribution(
                Decimal(len(values)), Decimal(amount), distinct_values=frozenset(values)
            ),
        }.get(aggregation, Contribution(Decimal(total), Decimal(amount)))
    return found


def others_stored(client: Client, database: str, incarnation: str) -> bool:
    """Whether any incarnation but ``incarnation`` stored a window."""
    result = client.query(
        f"SELECT 1 FROM {quote_database(database)}.rated_windows "
        "WHERE incarnation != {incarnation:String} LIMIT 1",
        parameters={"incarnation": incarnation},
    )
    return bool(result.result_rows)


class StoredPeriods:
    """The flow's seed reader: ``(incarnation, periods)`` -> ``stored_periods``.

    Opens its own client on first use; one query at a time, as the shards of a
    process share it.
    """

    def __init__(self, dsn: str, database: str, aggregations: Mapping[str, Aggregation]) -> None:
        self._dsn = dsn
        self._database = database
        self._aggregations = dict(aggregations)
        self._client: Client | None = None
        self._lock = threading.Lock()
        # Incarnations known to have stored nothing. The lease keeps other flows from
        # writing while this one runs, so what they stored is fixed at its start: when
        # they stored nothing, nothing needs seeding (one probe, not a query per batch).
        self._nothing_from: set[str] = set()

    def __call__(
        self, incarnation: str, periods: Sequence[PeriodRef]
    ) -> dict[PeriodKey, Contribution]:
        """See ``stored_periods``; a failure raises SinkError, which stops the run."""
        with self._lock:
            if incarnation in self._nothing_from:
                return {}
            try:
                if self._client is None:
                    self._client = connect(self._dsn, self._database)
                if not others_stored(self._client, self._database, incarnation):
                    self._nothing_from.add(incarnation)
                    return {}
                return stored_periods(
                    self._client,
                    self._database,
                    incarnation=incarnation,
                    periods=periods,
                    aggregations=self._aggregations,
                )
            except (ClickHouseError, OSError) as exc:
                lines = str(exc).strip().splitlines()
                first = redact_dsn(lines[0] if lines else type(exc).__name__, self._dsn)
                raise SinkError(
                    f"cannot read stored period usage from ClickHouse: {first}", attempts=1
                ) from exc
