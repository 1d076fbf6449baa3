"""Spend thresholds over all of a tenant's meters, once, across restarts (real Redis)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
import redis

from config.clock import FixedClock
from config.webhooks import WebhookEndpoint, WebhookSettings
from operators.live_usage import LiveCounter
from sinks.redis_live_writer import RETAIN_MS, LiveUsageWriter
from sinks.webhook_announcer import WebhookAnnouncer
from sinks.webhook_outbox import WebhookOutbox
from tests.clocks import CLOCK_OFFSETS, DAY_MS, mid_month_clock, month_start_ms
from tests.fixtures.webhook_receiver import SECRET

pytestmark = pytest.mark.integration

SETTINGS = WebhookSettings(
    endpoints=[
        WebhookEndpoint(name="all", url="http://127.0.0.1:9/a", secret=SECRET),
        WebhookEndpoint(
            name="acme-only",
            url="http://127.0.0.1:9/b",
            secret=SECRET,
            events=["spend.threshold"],
            tenants=["acme"],
        ),
    ],
    spend_thresholds={"plans": {"metered": ["10", "25"]}, "tenants": {"vip": ["1000"]}},
)


def _queued(outbox: WebhookOutbox, endpoint: str) -> list[dict[str, object]]:
    out = []
    while (head := outbox.head(endpoint)) is not None:
        out.append(json.loads(head.body)["data"])
        outbox.done(head)
    return out


@pytest.mark.parametrize("offset_ms", CLOCK_OFFSETS)
def test_spend_sums_meters_published_before_a_restart(redis_url: str, offset_ms: int) -> None:
    clock = mid_month_clock(offset_ms)
    start = month_start_ms(clock.now_ms())
    end = month_start_ms(start + 32 * DAY_MS)
    client = redis.Redis.from_url(redis_url)
    prefix = f"an{uuid.uuid4().hex[:8]}"

    def counter(tenant: str, meter: str, amount: str) -> LiveCounter:
        return LiveCounter(tenant, meter, start, end, Decimal(1), Decimal(amount), "USD", False)

    # Published by an earlier incarnation: 8 of calls.
    LiveUsageWriter(client, prefix, clock=clock).publish(
        [counter("acme", "calls", "8"), counter("vip", "calls", "8")], clock.now_ms()
    )
    announcer = WebhookAnnouncer(client, prefix, SETTINGS, lambda tenant: "metered", clock)
    # 8 + 3 = 11 reaches 10 only; vip's own thresholds (1000) are far away.
    announcer.counters([counter("acme", "tokens", "3"), counter("vip", "tokens", "3")])
    announcer.counters([counter("acme", "tokens", "4")])
    outbox = WebhookOutbox(client, prefix)
    assert [(d["tenant"], d["threshold"], d["amount"]) for d in _queued(outbox, "all")] == [
        ("acme", "10", "11")
    ]
    # 8 + 20 = 28: 25 now, and 10 not again, even from a restarted announcer.
    restarted = WebhookAnnouncer(client, prefix, SETTINGS, lambda tenant: "metered", clock)
    restarted.counters([counter("acme", "tokens", "20")])
    assert [d["threshold"] for d in _queued(outbox, "all")] == ["25"]
    assert [d["threshold"] for d in _queued(outbox, "acme-only")] == ["10", "25"]


def test_a_spend_crossing_stays_announced_while_its_period_can_be_replayed(
    redis_url: str,
) -> None:
    # Crossed on the first day of a 31-day period: the counters of that period are
    # kept (and rewritten by a replay) until RETAIN_MS after it ends, so the marker
    # that keeps the crossing from being announced again must last as long.
    start = month_start_ms(mid_month_clock(0).now_ms())
    end = start + 31 * DAY_MS
    clock = FixedClock(start + 3_600_000)
    client = redis.Redis.from_url(redis_url)
    prefix = f"an{uuid.uuid4().hex[:8]}"
    counter = LiveCounter("acme", "calls", start, end, Decimal(1), Decimal(12), "USD", False)
    announcer = WebhookAnnouncer(client, prefix, SETTINGS, lambda tenant: "metered", clock)
    announcer.counters([counter])
    [marker] = client.keys(f"{prefix}:webhook-sent:*")
    assert client.pttl(marker) >= end + RETAIN_MS - clock.now_ms() - 60_000
