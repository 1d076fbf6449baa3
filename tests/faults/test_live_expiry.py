"""A billing period that settles while its live counter waits to be published (issue 11).

Both cases used to stop the flow with a KeyError, and again after every
restart: the settled period was forgotten before its last change went out.
They run ``meterwax run`` on the real broker, Redis and chDB, with recovery.
Event times come from the clock (live counters expire in Redis relative to
it), never from fixed dates, except the oldest time an event may carry.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
import yaml

from operators.parse import MIN_TIME_MS
from sinks.redis_keys import live_usage_key
from tests.dataflows.test_kafka_flow import read_topic
from tests.faults.conftest import FaultRig, iso, produce

pytestmark = pytest.mark.integration

MINUTE = 60_000
PRICE = Decimal("0.002")
# One price version since the earliest event time, so amounts do not depend on the date.
PRICING_YAML = """
default_plan: flat
plans:
  - id: flat
    currency: USD
    versions:
      - version: f1
        effective_from: "2000-01-01T00:00:00Z"
        prices:
          tokens: { model: per_unit, unit_price: "0.002" }
        quotas:
          tokens: { soft_limit: "100", hard_limit: "200", thresholds: [50] }
"""


def month_start(ms: int) -> int:
    """Start of the UTC calendar month holding ``ms`` (the flat plan's billing period)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp() * 1000)


def line(n: int, time_ms: int, tokens: int) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"expiry-{n}",
            "source": "tests/expiry",
            "type": "llm.completion",
            "subject": "globex",
            "time": iso(time_ms),
            "data": {"tokens": tokens, "model": "m1"},
        }
    ).encode()


def flat_rig(make_rig: Callable[..., FaultRig], quota_topic: str) -> FaultRig:
    rig = make_rig(
        partitions=1,
        settings={
            "window": {"size": "1m", "grace": "10s", "settlement_horizon": "10m"},
            "kafka": {"quota_topic": quota_topic},
        },
    )
    (rig.workdir / "pricing.yaml").write_text(PRICING_YAML)
    return rig


def live_quantities(rig: FaultRig, periods: list[int]) -> dict[int, Decimal | None]:
    """globex's live token counter in Redis for each period start (None: no counter)."""
    settings = yaml.safe_load(rig.config.read_text())
    client = redis.Redis.from_url(settings["redis"]["url"], decode_responses=True)
    prefix = settings["redis"]["key_prefix"]
    out: dict[int, Decimal | None] = {}
    for start in periods:
        quantity = client.hget(live_usage_key(prefix, "globex", "tokens", start), "quantity")
        out[start] = None if quantity is None else Decimal(str(quantity))
    return out


def quota_kinds(brokers: str, topic: str) -> list[tuple[int, str, str | None]]:
    events = [json.loads(value) for value, _ in read_topic(brokers, topic)]
    assert len({e["event_id"] for e in events}) == len(events)
    return sorted((int(e["period_start_ms"]), e["kind"], e["percent"]) for e in events)


def test_old_month_events_admitted_just_before_it_settles_are_published_then_forgotten(
    make_rig: Callable[..., FaultRig], new_topic: Callable[..., str]
) -> None:
    # A backlog across the start of a month that ended at least a day ago.
    boundary = month_start(time.time_ns() // 1_000_000 - 86_400_000)
    old_month = month_start(boundary - 1)
    quota_topic = new_topic(prefix="quota")
    rig = flat_rig(make_rig, quota_topic)

    # Run 1: the old month's last minutes (40 tokens), then the new month's first (30).
    produce(
        rig.brokers,
        rig.topic,
        [line(n, boundary - (5 - n) * MINUTE, 10) for n in range(4)]
        + [line(4 + n, boundary + n * 2 * MINUTE, 10) for n in range(3)],
    )
    first = rig.run("first")
    assert first.run["accepted"] == 7

    # Run 2, restarted from recovery: two late events of the old month, still within
    # its settlement horizon (80 tokens: past the 50% threshold and the soft limit),
    # then one 30 minutes into the new month, which settles the old month.
    produce(
        rig.brokers,
        rig.topic,
        [
            line(7, boundary - 30_000, 40),
            line(8, boundary - 20_000, 40),
            line(9, boundary + 30 * MINUTE, 10),
        ],
    )
    second = rig.run("second")

    assert (second.run["accepted"], second.run["late_accepted"]) == (3, 2)
    assert second.run["reconciles"] is True
    assert second.totals == {("globex", "tokens"): (Decimal(160), 160 * PRICE)}
    assert live_quantities(rig, [old_month, boundary]) == {
        old_month: Decimal(120),
        boundary: Decimal(40),
    }
    assert quota_kinds(rig.brokers, quota_topic) == [
        (old_month, "soft_limit", None),
        (old_month, "threshold", "50"),
    ]


def test_one_event_from_2000_in_a_batch_with_a_current_one_cannot_stop_the_flow(
    make_rig: Callable[..., FaultRig], new_topic: Callable[..., str]
) -> None:
    now_ms = time.time_ns() // 1_000_000
    rig = flat_rig(make_rig, new_topic(prefix="quota"))
    current = [(now_ms - 2_000, 5), (now_ms - 1_000, 3)]

    # A fresh flow: the oldest valid event and a current one, in one batch.
    produce(rig.brokers, rig.topic, [line(0, MIN_TIME_MS, 7), line(1, *current[0])])
    first = rig.run("first")
    # Restarted from recovery, with one more current event.
    produce(rig.brokers, rig.topic, [line(2, *current[1])])
    second = rig.run("second")

    assert (first.run["accepted"], second.run["accepted"]) == (2, 1)
    assert second.run["reconciles"] is True
    assert second.totals == {("globex", "tokens"): (Decimal(15), 15 * PRICE)}
    expected: dict[int, Decimal] = defaultdict(Decimal)
    for time_ms, tokens in current:
        expected[month_start(time_ms)] += tokens
    assert live_quantities(rig, list(expected)) == expected
