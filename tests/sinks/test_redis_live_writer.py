"""Live counters written by one script call per chunk, read back through the public contract."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest
import redis

from operators.live_usage import LiveCounter
from sinks import redis_live_writer
from sinks.redis_live_usage import live_index_key, live_usage_key, read_live_usage
from sinks.redis_live_writer import RETAIN_MS, LiveUsageWriter, hard_limit_key

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def _counter(tenant: str, meter: str, quantity: str, *, limited: bool = False) -> LiveCounter:
    start = (int(time.time() * 1000) // DAY_MS) * DAY_MS
    return LiveCounter(
        tenant=tenant,
        meter=meter,
        period_start_ms=start,
        period_end_ms=start + 30 * DAY_MS,
        quantity=Decimal(quantity),
        amount=Decimal(quantity) * Decimal("0.000001"),
        currency="USD",
        hard_limited=limited,
    )


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_counters_round_trip_exactly_with_index_expiry_and_hard_limit(
    client: redis.Redis,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writer = LiveUsageWriter(client, prefix)
    # Tenant names with the separators of the key layout and of the script's lines.
    tenants = ["acme", "we:ird|ten ant", "tab\tand\nnewline"]
    counters = [
        _counter(tenant, meter, quantity, limited=meter == "tokens")
        for tenant in tenants
        for meter, quantity in (("tokens", "12345678901234.123456789"), ("calls", "7"))
    ]
    now_ms = int(time.time() * 1000)
    writer.publish(counters, now_ms)
    for c in counters:
        usage = read_live_usage(client, prefix, c.tenant, c.period_start_ms)[c.meter]
        assert (usage.quantity, usage.amount, usage.currency) == (c.quantity, c.amount, "USD")
        assert (usage.period_start_ms, usage.period_end_ms, usage.updated_ms) == (
            c.period_start_ms,
            c.period_end_ms,
            now_ms,
        )
        key = live_usage_key(prefix, c.tenant, c.meter, c.period_start_ms)
        assert client.pexpiretime(key) == c.period_end_ms + RETAIN_MS
        assert client.pexpiretime(live_index_key(prefix, c.tenant)) == c.period_end_ms + RETAIN_MS
        flag = client.get(hard_limit_key(prefix, c.tenant, c.meter))
        assert (flag == str(c.period_end_ms).encode()) if c.hard_limited else flag is None


def test_publishing_again_overwrites_with_absolute_values(client: redis.Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writer = LiveUsageWriter(client, prefix)
    first = _counter("acme", "calls", "5")
    writer.publish([first], 1)
    writer.publish([first], 2)  # a replay: same numbers, not doubled
    writer.publish([_counter("acme", "calls", "9")], 3)
    usage = read_live_usage(client, prefix, "acme", first.period_start_ms)["calls"]
    assert (usage.quantity, usage.updated_ms) == (Decimal(9), 3)


def test_many_counters_go_in_chunks(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_live_writer, "PUBLISH_CHUNK", 3)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    counters = [_counter(f"tenant-{n}", "calls", str(n + 1)) for n in range(10)]
    LiveUsageWriter(client, prefix).publish(counters, 1)
    for c in counters:
        usage = read_live_usage(client, prefix, c.tenant, c.period_start_ms)["calls"]
        assert usage.quantity == c.quantity
