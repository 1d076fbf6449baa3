"""Live counters written by one script call per chunk, read back through the public contract."""

from __future__ import annotations

import logging
import threading
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from config.clock import SYSTEM_CLOCK, Clock, ShiftedClock
from operators.live_usage import LiveCounter
from sinks import redis_live_writer
from sinks.local_services import start_redis, stop
from sinks.redis_keys import hard_limit_key, live_index_key, live_usage_key
from sinks.redis_live_usage import read_live_usage
from sinks.redis_live_writer import MIN_MARKER_TTL_MS, RETAIN_MS, LiveUsageWriter
from tests.clocks import CLOCK_OFFSETS, DAY_MS

pytestmark = pytest.mark.integration

# Slack for the time between the writer computing a TTL and the test computing it.
TTL_SLACK_MS = 10_000


def _counter(
    tenant: str,
    meter: str,
    quantity: str,
    *,
    limited: bool = False,
    clock: Clock = SYSTEM_CLOCK,
    days_ago: int = 0,
) -> LiveCounter:
    """A 30-day period that started at midnight (by ``clock``) ``days_ago`` days ago."""
    start = (clock.now_ms() // DAY_MS - days_ago) * DAY_MS
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


def _assert_ttl(client: redis.Redis, key: str, expected_ms: int) -> None:
    ttl = client.pttl(key)
    assert abs(ttl - expected_ms) <= TTL_SLACK_MS, (key, ttl, expected_ms)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.mark.parametrize("offset_ms", CLOCK_OFFSETS)
def test_counters_round_trip_exactly_with_index_expiry_and_hard_limit(
    client: redis.Redis, offset_ms: int
) -> None:
    # Expiry follows the writer's clock, however far it is from the Redis server's.
    clock = ShiftedClock(offset_ms)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writer = LiveUsageWriter(client, prefix, clock=clock)
    # Tenant names with the separators of the key layout and of the script's lines.
    tenants = ["acme", "we:ird|ten ant", "tab\tand\nnewline", "zürich:ü"]
    counters = [
        _counter(tenant, meter, quantity, limited=meter == "tokens", clock=clock)
        for tenant in tenants
        for meter, quantity in (("tokens", "12345678901234.123456789"), ("calls", "7"))
    ]
    now_ms = clock.now_ms()
    writer.publish(counters, now_ms)
    for c in counters:
        usage = read_live_usage(client, prefix, c.tenant, c.period_start_ms)[c.meter]
        assert (usage.quantity, usage.amount, usage.currency) == (c.quantity, c.amount, "USD")
        assert (usage.period_start_ms, usage.period_end_ms, usage.updated_ms) == (
            c.period_start_ms,
            c.period_end_ms,
            now_ms,
        )
        retention = c.period_end_ms + RETAIN_MS - now_ms
        _assert_ttl(client, live_usage_key(prefix, c.tenant, c.meter, c.period_start_ms), retention)
        _assert_ttl(client, live_index_key(prefix, c.tenant), retention)
        flag = hard_limit_key(prefix, c.tenant, c.meter)
        if c.hard_limited:
            assert client.get(flag) == str(c.period_end_ms).encode()
            _assert_ttl(client, flag, c.period_end_ms - now_ms)
        else:
            assert client.get(flag) is None


@pytest.mark.parametrize("offset_ms", CLOCK_OFFSETS)
def test_what_is_past_by_the_clock_is_not_written_and_nothing_fails(
    client: redis.Redis, offset_ms: int
) -> None:
    clock = ShiftedClock(offset_ms)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writer = LiveUsageWriter(client, prefix, clock=clock)
    current = _counter("acme", "tokens", "3", limited=True, clock=clock)
    # Ended 10 days ago: still retained, but no longer limited.
    ended = _counter("acme", "calls", "2", limited=True, clock=clock, days_ago=40)
    # Retention over (the period ended 70 days ago): expired on arrival, so never written.
    gone = _counter("acme", "users", "1", limited=True, clock=clock, days_ago=100)
    writer.publish([gone], clock.now_ms())  # a chunk with nothing left to write
    writer.publish([ended, gone, current], clock.now_ms())

    found = {
        m: u.quantity
        for s in (current, ended, gone)
        for m, u in read_live_usage(client, prefix, "acme", s.period_start_ms).items()
    }
    assert found == {"tokens": 3, "calls": 2}
    assert client.sismember(live_index_key(prefix, "acme"), f"users:{gone.period_start_ms}") == 0
    assert client.exists(live_usage_key(prefix, "acme", "users", gone.period_start_ms)) == 0
    assert client.get(hard_limit_key(prefix, "acme", "tokens")) is not None
    assert client.get(hard_limit_key(prefix, "acme", "calls")) is None
    assert client.get(hard_limit_key(prefix, "acme", "users")) is None


def test_an_older_period_does_not_shorten_the_index(client: redis.Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writer = LiveUsageWriter(client, prefix)
    current = _counter("acme", "calls", "5")
    writer.publish([current], 1)
    writer.publish([_counter("acme", "calls", "4", days_ago=40)], 2)

    expected = current.period_end_ms + RETAIN_MS - SYSTEM_CLOCK.now_ms()
    _assert_ttl(client, live_index_key(prefix, "acme"), expected)
    assert read_live_usage(client, prefix, "acme", current.period_start_ms)["calls"].quantity == 5


@pytest.mark.parametrize("offset_ms", CLOCK_OFFSETS)
def test_quota_markers_expire_after_retention_or_at_least_after_the_floor(
    client: redis.Redis, offset_ms: int
) -> None:
    clock = ShiftedClock(offset_ms)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writer = LiveUsageWriter(client, prefix, clock=clock)
    end_ms = clock.now_ms() + 5 * DAY_MS
    writer.mark_quota_sent("current", end_ms)
    writer.mark_quota_sent("long-closed", clock.now_ms() - RETAIN_MS - 100 * DAY_MS)

    assert writer.quota_sent("current") and writer.quota_sent("long-closed")
    _assert_ttl(client, f"{prefix}:quota-sent:current", end_ms + RETAIN_MS - clock.now_ms())
    _assert_ttl(client, f"{prefix}:quota-sent:long-closed", MIN_MARKER_TTL_MS)


def test_publishing_again_overwrites_with_absolute_values(client: redis.Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writer = LiveUsageWriter(client, prefix)
    first = _counter("acme", "calls", "5")
    writer.publish([first], 1)
    writer.publish([first], 2)  # a replay: same numbers, not doubled
    writer.publish([_counter("acme", "calls", "9")], 3)
    usage = read_live_usage(client, prefix, "acme", first.period_start_ms)["calls"]
    assert (usage.quantity, usage.updated_ms) == (Decimal(9), 3)


def test_a_counter_whose_keys_were_lost_is_written_whole_again(client: redis.Redis) -> None:
    # Later publishes write only what changes: a hash that expired or was lost with
    # Redis's data must come back with its fixed fields, expiry and index entry.
    prefix = f"t{uuid.uuid4().hex[:8]}"
    writer = LiveUsageWriter(client, prefix)
    counter = _counter("ten:ant", "calls", "5", limited=True)
    hash_key = live_usage_key(prefix, counter.tenant, counter.meter, counter.period_start_ms)
    index = live_index_key(prefix, counter.tenant)
    flag = hard_limit_key(prefix, counter.tenant, counter.meter)
    writer.publish([counter], 1)
    fixed = client.hgetall(hash_key)
    client.delete(hash_key, index, flag)
    writer.publish([_counter("ten:ant", "calls", "6", limited=True)], 2)
    again = client.hgetall(hash_key)
    assert again == {**fixed, b"quantity": b"6", b"updated_ms": b"2", b"amount": b"0.000006"}
    assert client.smembers(index) == {f"calls:{counter.period_start_ms}".encode()}
    assert client.pttl(hash_key) > 0 and client.pttl(index) > 0
    assert client.get(flag) == str(counter.period_end_ms).encode()


def test_a_writers_first_write_of_a_counter_mends_a_lost_index_entry(
    client: redis.Redis,
) -> None:
    # The index entry is written with the hash; one lost while the hash lived (an
    # operator's DEL, eviction) comes back with the next writer's first publish.
    prefix = f"t{uuid.uuid4().hex[:8]}"
    counter = _counter("acme", "calls", "5")
    LiveUsageWriter(client, prefix).publish([counter], 1)
    index = live_index_key(prefix, counter.tenant)
    client.delete(index)
    LiveUsageWriter(client, prefix).publish([_counter("acme", "calls", "6")], 2)
    assert client.smembers(index) == {f"calls:{counter.period_start_ms}".encode()}
    assert client.pttl(index) > 0


def test_many_counters_go_in_chunks(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_live_writer, "PUBLISH_CHUNK", 3)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    counters = [_counter(f"tenant-{n}", "calls", str(n + 1)) for n in range(10)]
    LiveUsageWriter(client, prefix).publish(counters, 1)
    for c in counters:
        usage = read_live_usage(client, prefix, c.tenant, c.period_start_ms)["calls"]
        assert usage.quantity == c.quantity


def test_publishing_waits_out_a_failover(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The writer's address points at a server demoted to a read-only replica; it is
    # promoted half a second later. Publishing must wait, not stop the flow.
    primary = start_redis(tmp_path / "primary")
    replica = start_redis(tmp_path / "replica")

    def replicaof(host: str, port: str) -> None:
        with redis.Redis(port=replica.port) as admin:
            admin.replicaof(host, port)

    promoter = threading.Timer(0.5, replicaof, args=("NO", "ONE"))
    try:
        replicaof("127.0.0.1", str(primary.port))
        client = redis.Redis(port=replica.port)
        writer = LiveUsageWriter(client, "failover")
        counter = _counter("acme", "tokens", "42")
        caplog.set_level(logging.WARNING, logger=redis_live_writer.__name__)
        promoter.start()
        writer.publish([counter], SYSTEM_CLOCK.now_ms())
        usage = read_live_usage(client, "failover", "acme", counter.period_start_ms)["tokens"]
        assert usage.quantity == Decimal(42)
    finally:
        if promoter.ident is not None:
            promoter.join()
        stop(replica.pid)
        stop(primary.pid)
    assert any("read only replica" in r.getMessage() for r in caplog.records)
