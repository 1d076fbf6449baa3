"""A flow's recovery directory is lost; a fresh flow meters the whole topic again (issue 12).

Flow A meters the first part of a topic with recovery, to the end (``--no-tail``
closes and writes every window). Its recovery directory is deleted; new events
arrive in the same windows (and retries of old ones). Flow B, a new
incarnation, meters the whole topic with the same Redis and ClickHouse: the
old events are Redis duplicates, the new ones its own. Every window, period
usage and amount must equal an independent truth (graduated tiers and a free
allowance, so a period priced from zero would be wrong), ``meterwax reconcile``
must exit 0, the live counters in Redis must be the truth, and no quota event
may be produced twice. Runs on the real broker, Redis and chDB.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
import yaml

from sinks.redis_live_usage import live_usage_key
from tests.dataflows.test_kafka_flow import read_topic
from tests.faults.conftest import FaultRig, iso, produce

pytestmark = pytest.mark.integration

MINUTE = 60_000
TENANTS = ("acme", "globex")
METERS_YAML = """
meters:
  - { slug: tokens, event_type: llm.completion, aggregation: SUM, value_property: $.tokens,
      group_by: { model: $.model } }
  - { slug: calls, event_type: api.request, aggregation: COUNT }
  - { slug: users, event_type: api.request, aggregation: UNIQUE_COUNT, value_property: $.user }
  - { slug: peak_gb, event_type: storage.snapshot, aggregation: MAX, value_property: $.gb }
  - { slug: seats, event_type: seats.report, aggregation: LATEST, value_property: $.seats }
"""
# One price version since long ago, so nothing depends on today's date.
PRICING_YAML = """
default_plan: tiered
plans:
  - id: tiered
    currency: USD
    versions:
      - version: t1
        effective_from: "2000-01-01T00:00:00Z"
        prices:
          tokens:
            model: graduated
            free_allowance: "300"
            tiers:
              - { up_to: "1000", unit_price: "0.01" }
              - { unit_price: "0.004" }
          calls: { model: per_unit, unit_price: "0.5", free_allowance: "10" }
          users: { model: per_unit, unit_price: "1" }
          peak_gb:
            model: graduated
            tiers:
              - { up_to: "10", unit_price: "1" }
              - { unit_price: "0.5" }
          seats: { model: per_unit, unit_price: "2" }
        quotas:
          calls: { soft_limit: "60", hard_limit: "90", thresholds: [50] }
"""
QUOTA = {"threshold:50": Decimal(30), "soft_limit": Decimal(60), "hard_limit": Decimal(90)}

Event = dict[str, object]
WindowKey = tuple[str, str, str, int]
PeriodKey = tuple[str, str, int]


def month_start(ms: int) -> int:
    """Start of the UTC month holding ``ms``: the plan's billing period."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp() * 1000)


def make_events(rng: random.Random, first: int, count: int, base_ms: int) -> list[Event]:
    """``count`` events of random kinds in the 20 one-minute windows from ``base_ms``."""
    events: list[Event] = []
    for n in range(first, first + count):
        kind = rng.randrange(4)
        data: dict[str, object]
        if kind == 0:
            kind_type = "llm.completion"
            data = {"tokens": rng.randint(1, 20), "model": rng.choice(["m1", "m2"])}
        elif kind == 1:
            kind_type, data = "api.request", {"user": rng.choice(["u1", "u2", "u3", "7", "7.0"])}
        elif kind == 2:
            kind_type, data = "storage.snapshot", {"gb": f"{rng.randint(5, 300) / 10}"}
        else:
            kind_type, data = "seats.report", {"seats": rng.randint(1, 50)}
        events.append(
            {
                "specversion": "1.0",
                "id": f"lost-{n}",
                "source": "tests/lost-recovery",
                "type": kind_type,
                "subject": rng.choice(TENANTS),
                "time": iso(base_ms + rng.randrange(20 * MINUTE)),
                "data": data,
            }
        )
    return events


def measures(event: Event) -> list[tuple[str, str, object]]:
    """(meter, group key, value) of each meter the event counts for."""
    data = event["data"]
    assert isinstance(data, dict)
    match event["type"]:
        case "llm.completion":
            group = json.dumps({"model": data["model"]}, separators=(",", ":"))
            return [("tokens", group, Decimal(data["tokens"]))]
        case "api.request":
            return [("calls", "{}", None), ("users", "{}", str(data["user"]))]
        case "storage.snapshot":
            return [("peak_gb", "{}", Decimal(str(data["gb"])))]
        case _:
            return [("seats", "{}", Decimal(data["seats"]))]


def aggregate(meter: str, values: list[tuple[int, object]]) -> Decimal:
    """The meter's aggregation over (time, value) pairs."""
    if meter == "tokens":
        return sum((v for _, v in values), Decimal(0))  # type: ignore[misc]
    if meter == "calls":
        return Decimal(len(values))
    if meter == "users":
        return Decimal(len({v for _, v in values}))
    if meter == "peak_gb":
        return max(v for _, v in values)  # type: ignore[type-var,return-value]
    return max(values, key=lambda tv: (tv[0], tv[1]))[1]  # type: ignore[return-value]


def cost(meter: str, quantity: Decimal) -> Decimal:
    """The period's price, written out independently of operators.pricing."""
    if meter == "tokens":
        billable = max(Decimal(0), quantity - 300)
        return min(billable, Decimal(1000)) * Decimal("0.01") + max(
            Decimal(0), billable - 1000
        ) * Decimal("0.004")
    if meter == "calls":
        return max(Decimal(0), quantity - 10) * Decimal("0.5")
    if meter == "users":
        return quantity
    if meter == "peak_gb":
        return min(quantity, Decimal(10)) + max(Decimal(0), quantity - 10) * Decimal("0.5")
    return quantity * 2


def truth(events: Iterable[Event]) -> tuple[dict[WindowKey, Decimal], dict[PeriodKey, Decimal]]:
    """Window and period usage of the distinct events (by id)."""
    unique = {str(e["id"]): e for e in events}.values()
    windows: dict[WindowKey, list[tuple[int, object]]] = {}
    periods: dict[PeriodKey, list[tuple[int, object]]] = {}
    for event in unique:
        time_ms = int(datetime.fromisoformat(str(event["time"])).timestamp() * 1000)
        for meter, group, value in measures(event):
            start = time_ms - time_ms % MINUTE
            windows.setdefault((str(event["subject"]), meter, group, start), []).append(
                (time_ms, value)
            )
            periods.setdefault((str(event["subject"]), meter, month_start(time_ms)), []).append(
                (time_ms, value)
            )
    return (
        {key: aggregate(key[1], values) for key, values in windows.items()},
        {key: aggregate(key[1], values) for key, values in periods.items()},
    )


STORED_WINDOWS = """
import json, sys
from sinks.clickhouse import connect, window_rows
client = connect(sys.argv[1], "faults")
print(json.dumps([[w.tenant, w.meter, w.group_key, w.window_start_ms, str(w.quantity),
                   str(w.amount)] for w in window_rows(client, "faults")]))
"""


def stored_windows(rig: FaultRig) -> dict[WindowKey, tuple[Decimal, Decimal]]:
    """window_usage as a separate process reads it (this one may hold another chDB path)."""
    out = subprocess.run(
        [sys.executable, "-c", STORED_WINDOWS, f"chdb://{rig.workdir / 'ch'}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return {(t, m, g, int(s)): (Decimal(q), Decimal(a)) for t, m, g, s, q, a in json.loads(out)}


def test_fresh_flow_after_lost_recovery_directory_is_exact(
    make_rig: Callable[..., FaultRig], kafka_brokers: str, new_topic: Callable[..., str]
) -> None:
    rng = random.Random(12)
    quota_topic = new_topic(partitions=1, prefix="quota")
    rig = make_rig(partitions=1, settings={"kafka": {"quota_topic": quota_topic}})
    (rig.workdir / "meters.yaml").write_text(METERS_YAML)
    (rig.workdir / "pricing.yaml").write_text(PRICING_YAML)
    now_ms = time.time_ns() // 1_000_000
    base_ms = now_ms - now_ms % MINUTE - 40 * MINUTE
    first = make_events(rng, 0, 400, base_ms)
    produce(rig.brokers, rig.topic, [json.dumps(e).encode() for e in first])

    rig.run("flow-a")
    shutil.rmtree(rig.recovery_dir)
    # New events in the same windows, and retries of old ones.
    second = make_events(rng, 400, 300, base_ms) + rng.sample(first, 50)
    produce(rig.brokers, rig.topic, [json.dumps(e).encode() for e in second])
    summary = rig.run("flow-b")

    windows, periods = truth(first + second)
    assert summary.run["accepted"] == 300, "flow B counts exactly the new events"
    stored = stored_windows(rig)
    assert {key: q for key, (q, _) in stored.items()} == windows
    amounts: Counter[PeriodKey] = Counter()
    for (tenant, meter, _, start), (_, amount) in stored.items():
        amounts[(tenant, meter, month_start(start))] += amount  # type: ignore[assignment]
    assert dict(amounts) == {key: cost(key[1], q) for key, q in periods.items()}
    times = [int(datetime.fromisoformat(str(e["time"])).timestamp() * 1000) for e in first]
    code, result = rig.reconcile(min(times) - MINUTE, max(times) + 2 * MINUTE)
    assert (code, result["differences"]) == (0, [])

    settings = yaml.safe_load(rig.config.read_text())
    client = redis.Redis.from_url(settings["redis"]["url"], decode_responses=True)
    live = {}
    for tenant, meter, start in periods:
        key = live_usage_key(settings["redis"]["key_prefix"], tenant, meter, start)
        fields = client.hgetall(key)
        live[(tenant, meter, start)] = (Decimal(fields["quantity"]), Decimal(fields["amount"]))
    assert live == {key: (q, cost(key[1], q)) for key, q in periods.items()}

    quota_events = read_topic(kafka_brokers, quota_topic)
    produced = [json.loads(value)["event_id"] for value, _ in quota_events]
    assert sorted(produced) == sorted(
        f"{tenant}|calls|{start}|{level}"
        for (tenant, meter, start), quantity in periods.items()
        if meter == "calls"
        for level, at in QUOTA.items()
        if quantity >= at
    ), "each quota level reached is announced exactly once"
