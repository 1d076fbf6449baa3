"""GET /v1/usage against chDB: for every window size, time zone and group-by, the buckets and
totals equal what the stored windows hold; final and provisional apart; filters; isolation."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from clickhouse_connect.driver.client import Client

from config.display import iso_utc
from operators.model import RatedWindow, WindowKind
from operators.periods import billing_period
from sinks.clickhouse import ClickHouseWriter
from sinks.redis_keys import live_index_key, live_usage_key
from tests.api.conftest import DEC_2026_MS, NOV_2026_MS, NOW_MS, Keys, bearer

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
# From 2026-10-30 to 2026-11-02: three local days, two billing periods, in every zone tested.
FROM_MS = NOV_2026_MS - 2 * 86_400_000
TO_MS = NOV_2026_MS + 86_400_000
ZONES = ("UTC", "Asia/Kolkata", "Europe/Berlin")
GROUPINGS = ((), ("model",), ("region",), ("model", "region"))
AGGREGATION = {"tokens": "SUM", "calls": "COUNT", "peak_gb": "MAX"}


def rated(
    tenant: str,
    meter: str,
    start_ms: int,
    groups: tuple[tuple[str, str], ...],
    q: str,
    rev: int = 1,
) -> RatedWindow:
    quantity = Decimal(q)
    return RatedWindow(
        tenant=tenant,
        meter=meter,
        groups=groups,
        window_start_ms=start_ms,
        window_end_ms=start_ms + MINUTE_MS,
        quantity=quantity,
        previous_quantity=Decimal(0),
        amount=quantity * Decimal("0.001"),
        previous_amount=Decimal(0),
        currency="USD",
        plan_id="basic",
        price_version="v1",
        revision=rev,
        kind=WindowKind.WINDOW if rev == 1 else WindowKind.ADJUSTMENT,
        emitted_at_ms=start_ms + 2 * MINUTE_MS + rev,
        period_start_ms=billing_period(start_ms, 1, "UTC")[0],
        period_quantity=quantity,
        period_amount=quantity * Decimal("0.001"),
        incarnation="i1",
        aggregation=AGGREGATION[meter],
        latest_ms=start_ms,
    )


def windows(tenant: str, scale: int) -> list[RatedWindow]:
    """Minute windows every 97 minutes over the range, two models and two regions of tokens,
    calls and a MAX meter; plus a late revision that replaces one window's value."""
    out = []
    for n, start in enumerate(range(FROM_MS, TO_MS, 97 * MINUTE_MS)):
        model, region = ("m1", "m2")[n % 2], ("eu", "us")[n % 3 % 2]
        groups = (("model", model), ("region", region))
        out.append(rated(tenant, "tokens", start, groups, f"{scale * (n + 1)}.5"))
        out.append(rated(tenant, "calls", start, (), str(n % 7 + 1)))
        out.append(rated(tenant, "peak_gb", start, (), f"{(n * 37) % 101}.25"))
    first = out[0]
    out.append(rated(tenant, "tokens", first.window_start_ms, first.groups, "9999", rev=2))
    return out


@pytest.fixture
def stored(ch_client: Client, ch_database: str) -> list[RatedWindow]:
    acme = windows("acme", 10)
    ClickHouseWriter(ch_client, ch_database).write_windows([*acme, *windows("globex", 1000)])
    return acme


def latest(rows: list[RatedWindow]) -> list[RatedWindow]:
    """Each window's highest revision: what a window holds."""
    best: dict[tuple[str, tuple[tuple[str, str], ...], int], RatedWindow] = {}
    for row in rows:
        key = (row.meter, row.groups, row.window_start_ms)
        if key not in best or row.revision > best[key].revision:
            best[key] = row
    return list(best.values())


def bucket(start_ms: int, size: str, zone: str) -> tuple[int, int]:
    """The bucket holding ``start_ms``, worked out with zoneinfo (not ClickHouse)."""
    if size == "period":
        return billing_period(start_ms, 1, "UTC")
    tz = ZoneInfo(zone)
    local = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(tz)
    if size == "minute":
        begin, end = local.replace(second=0, microsecond=0), timedelta(minutes=1)
    elif size == "hour":
        begin, end = local.replace(minute=0, second=0, microsecond=0), timedelta(hours=1)
    else:
        begin = datetime(local.year, local.month, local.day, tzinfo=tz)
        following = (local + timedelta(days=1)).date()
        finish = datetime(following.year, following.month, following.day, tzinfo=tz)
        return int(begin.timestamp() * 1000), int(finish.timestamp() * 1000)
    return int(begin.timestamp() * 1000), int((begin + end).timestamp() * 1000)


def expected(
    rows: list[RatedWindow], size: str, zone: str, group_by: tuple[str, ...]
) -> list[dict[str, object]]:
    sums: dict[tuple[str, int, int, tuple[str | None, ...]], list[Decimal]] = defaultdict(
        lambda: [Decimal(0), Decimal(0), Decimal(0)]
    )
    for row in latest(rows):
        start, end = bucket(row.window_start_ms, size, zone)
        values = dict(row.groups)
        entry = sums[(row.meter, start, end, tuple(values.get(g) for g in group_by))]
        entry[0] += row.quantity
        entry[1] = max(entry[1], row.quantity)
        entry[2] += row.amount
    return [
        {
            "meter": meter,
            "window_start": iso_utc(start),
            "window_end": iso_utc(end),
            "groups": dict(zip(group_by, values, strict=True)),
            "quantity": q_max if meter == "peak_gb" else q_sum,
            "amount": amount,
            "currency": "USD",
        }
        for (meter, start, end, values), (q_sum, q_max, amount) in sums.items()
    ]


def decimals(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Rows with amounts and quantities as Decimal, in a stable order, to compare values."""
    out = [
        {**row, "quantity": Decimal(str(row["quantity"])), "amount": Decimal(str(row["amount"]))}
        for row in rows
    ]
    return sorted(out, key=lambda r: (r["meter"], r["window_start"], str(r["groups"])))


def ask(api: httpx.Client, key: str, **params: object) -> httpx.Response:
    return api.get("/v1/usage", params=params, headers=bearer(key))


@pytest.mark.parametrize("size", ["minute", "hour", "day", "period"])
def test_every_window_size_and_group_by_equals_the_stored_windows(
    api: httpx.Client,
    keys: Keys,
    stored: list[RatedWindow],
    ch_client: Client,
    ch_database: str,
    size: str,
) -> None:
    totals = {
        meter: (Decimal(q_sum), Decimal(q_max), Decimal(amount))
        for meter, q_sum, q_max, amount in ch_client.query(
            f"SELECT meter, sum(quantity), max(quantity), sum(amount) "
            f"FROM `{ch_database}`.window_usage WHERE tenant = 'acme' GROUP BY meter"
        ).result_rows
    }
    for zone, group_by in itertools.product(ZONES if size != "period" else ("UTC",), GROUPINGS):
        response = ask(
            api,
            keys.acme,
            **{"from": iso_utc(FROM_MS), "to": iso_utc(TO_MS)},
            window_size=size,
            window_time_zone=zone,
            group_by=list(group_by),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert decimals(body["final"]) == decimals(expected(stored, size, zone, group_by)), (
            size,
            zone,
            group_by,
        )
        # The totals are ClickHouse's own sums (the peak for the MAX meter).
        got = {t["meter"]: (Decimal(t["quantity"]), Decimal(t["amount"])) for t in body["totals"]}
        assert got == {
            "tokens": (totals["tokens"][0], totals["tokens"][2]),
            "calls": (totals["calls"][0], totals["calls"][2]),
            "peak_gb": (totals["peak_gb"][1], totals["peak_gb"][2]),
        }


def test_filters_keep_the_windows_with_those_group_values(
    api: httpx.Client, keys: Keys, stored: list[RatedWindow]
) -> None:
    body = ask(
        api,
        keys.acme,
        **{"from": iso_utc(FROM_MS), "to": iso_utc(TO_MS)},
        window_size="day",
        group_by="model",
        filter=["region:eu", "model:m1", "model:m3"],
    ).json()

    kept = [
        w
        for w in stored
        if dict(w.groups).get("region") == "eu" and dict(w.groups).get("model") == "m1"
    ]
    assert decimals(body["final"]) == decimals(expected(kept, "day", "UTC", ("model",)))
    assert {row["groups"]["model"] for row in body["final"]} == {"m1"}


def test_final_and_provisional_apart(
    api: httpx.Client, keys: Keys, stored: list[RatedWindow], live: redis.Redis, prefix: str
) -> None:
    november = [
        w for w in latest(stored) if w.meter == "tokens" and w.window_start_ms >= NOV_2026_MS
    ]
    final = sum(w.amount for w in november)
    live.hset(
        live_usage_key(prefix, "acme", "tokens", NOV_2026_MS),
        mapping={
            "quantity": "1",
            "amount": str(final + Decimal("0.75")),
            "currency": "USD",
            "period_start_ms": NOV_2026_MS,
            "period_end_ms": DEC_2026_MS,
            "updated_ms": NOW_MS,
        },
    )
    live.sadd(live_index_key(prefix, "acme"), f"tokens:{NOV_2026_MS}")

    # Default range: the billing period holding now (November 2026).
    body = ask(api, keys.acme).json()

    assert (body["from"], body["to"], body["window_size"]) == (
        iso_utc(NOV_2026_MS),
        iso_utc(DEC_2026_MS),
        "period",
    )
    tokens = [t for t in body["totals"] if t["meter"] == "tokens"]
    assert Decimal(tokens[0]["amount"]) == final
    assert [p for p in body["provisional"] if p["meter"] == "tokens"] == [
        {
            "meter": "tokens",
            "period": {"start": iso_utc(NOV_2026_MS), "end": iso_utc(DEC_2026_MS)},
            "amount": "0.75",
            "currency": "USD",
            "live": "current",
        }
    ]


def test_each_key_reads_its_own_tenants_usage_only(
    api: httpx.Client, keys: Keys, stored: list[RatedWindow]
) -> None:
    span = {"from": iso_utc(FROM_MS), "to": iso_utc(TO_MS)}
    acme = ask(api, keys.acme, **span).json()
    globex = ask(api, keys.globex, **span).json()

    assert (acme["tenant"], globex["tenant"]) == ("acme", "globex")
    assert acme["totals"] != globex["totals"]
    assert ask(api, keys.acme, **span, tenant="globex").status_code == 403
