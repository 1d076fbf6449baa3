"""The output lease's Lua scripts against the session's real redis-server.

Acquire, refuse, take over from our own instance or after expiry, renew,
release, and the fence in the claim and live-counter scripts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis

from operators.idempotency import Claim, ClaimStatus, claim_day, key_hash
from operators.live_usage import LiveCounter
from sinks.redis_idempotency import RedisIdempotencyStore, day_key
from sinks.redis_keys import lease_key, live_usage_key
from sinks.redis_lease import Fence, Holder, LeaseHeld, LeaseLost, LeaseSuperseded, RedisLease
from sinks.redis_live_writer import LiveUsageWriter

pytestmark = pytest.mark.integration

TTL_MS = 30_000
STARTED_MS = 1_700_000_000_000


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the session's redis-server."""
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"lease-{uuid.uuid4().hex}"


def _lease(client: redis.Redis, prefix: str, instance: str, ttl_ms: int = TTL_MS) -> RedisLease:
    return RedisLease(client, prefix, instance, ttl_ms)


def test_a_free_lease_is_taken_and_another_instance_is_refused(
    client: redis.Redis, prefix: str
) -> None:
    first = _lease(client, prefix, "a").acquire(STARTED_MS, "chdb:/x database d")
    assert first == Holder("a", 1, STARTED_MS, "chdb:/x database d")
    assert client.pttl(lease_key(prefix)) > TTL_MS - 5_000

    with pytest.raises(LeaseHeld) as refused:
        _lease(client, prefix, "b").acquire(STARTED_MS + 1, "chdb:/y database d")
    assert refused.value.holder == first
    assert TTL_MS - 5_000 < refused.value.remaining_ms <= TTL_MS
    # The refusal changed nothing.
    assert client.get(lease_key(prefix)) == b"a|1|1700000000000|chdb:/x database d"


def test_our_own_instance_takes_over_at_once_under_a_new_epoch(
    client: redis.Redis, prefix: str
) -> None:
    crashed = _lease(client, prefix, "a")
    crashed.acquire(STARTED_MS, "t")
    restarted = _lease(client, prefix, "a").acquire(STARTED_MS + 5, "t")
    assert (restarted.instance, restarted.epoch) == ("a", 2)
    # The crashed run's handle is fenced off: it can neither renew nor release.
    assert crashed.extend() is False
    crashed.release()
    assert client.get(lease_key(prefix)) == b"a|2|1700000000005|t"


def test_another_instance_takes_over_once_the_lease_expired(
    client: redis.Redis, prefix: str
) -> None:
    crashed = _lease(client, prefix, "a", ttl_ms=200)
    crashed.acquire(STARTED_MS, "t")
    time.sleep(0.3)
    taker = _lease(client, prefix, "b").acquire(STARTED_MS, "t")
    assert (taker.instance, taker.epoch) == ("b", 2)
    assert crashed.extend() is False


def test_a_resumed_instance_is_refused_once_another_took_the_lease_after_it(
    client: redis.Redis, prefix: str
) -> None:
    a = _lease(client, prefix, "a")
    a.acquire(STARTED_MS, "t")
    a.release()
    # A resumes from its own state: nobody else wrote in between.
    a.acquire(STARTED_MS + 1, "t", resuming=True)
    a.release()
    b = _lease(client, prefix, "b")
    b.acquire(STARTED_MS + 2, "t")
    b.release()

    with pytest.raises(LeaseSuperseded) as refused:
        _lease(client, prefix, "a").acquire(STARTED_MS + 3, "t", resuming=True)
    assert refused.value.instance == "b"
    assert client.get(lease_key(prefix)) is None  # nothing taken
    # An instance that never held it has no state to be stale (e.g. a refused start
    # left its id in a recovery directory): it may go on.
    c = _lease(client, prefix, "c")
    c.acquire(STARTED_MS + 4, "t", resuming=True)
    c.release()
    # Now c was last: b, which held it before c, may not resume either.
    with pytest.raises(LeaseSuperseded):
        _lease(client, prefix, "b").acquire(STARTED_MS + 5, "t", resuming=True)


def test_renewal_pushes_the_expiry_and_release_frees_the_lease(
    client: redis.Redis, prefix: str
) -> None:
    lease = _lease(client, prefix, "a", ttl_ms=1_000)
    lease.acquire(STARTED_MS, "t")
    time.sleep(0.5)
    assert lease.extend() is True
    assert client.pttl(lease_key(prefix)) > 900
    lease.release()
    assert client.exists(lease_key(prefix)) == 0
    assert _lease(client, prefix, "b").acquire(STARTED_MS, "t").instance == "b"


def test_claims_are_refused_once_another_flow_holds_the_lease(
    client: redis.Redis, prefix: str
) -> None:
    holder = _lease(client, prefix, "a").acquire(STARTED_MS, "t")
    store = RedisIdempotencyStore(client, ttl_s=3_600, key_prefix=prefix)
    store.fence = Fence(holder.fence)
    assert store.claim([Claim("acme", "src", "e1", "a|t|0|1", STARTED_MS)]) == [ClaimStatus.NEW]

    client.delete(lease_key(prefix))
    _lease(client, prefix, "b").acquire(STARTED_MS, "t")
    with pytest.raises(LeaseLost):
        store.claim([Claim("acme", "src", "e2", "a|t|0|2", STARTED_MS)])
    # Nothing of the refused chunk was written.
    day = day_key(prefix, claim_day(STARTED_MS))
    assert client.get(day) == b"1"
    assert list(client.hgetall(f"{day}:0")) == [key_hash("acme", "src", "e1")]
    # An older epoch of the holding instance (a run its restart took over) is refused too.
    store.fence = Fence("b|1|")
    with pytest.raises(LeaseLost):
        store.claim([Claim("acme", "src", "e2", "b|t|0|2", STARTED_MS)])


def test_live_counters_are_refused_once_the_lease_is_lost(client: redis.Redis, prefix: str) -> None:
    holder = _lease(client, prefix, "a").acquire(STARTED_MS, "t")
    writer = LiveUsageWriter(client, prefix)
    writer.fence = Fence(holder.fence)
    now_ms = int(time.time() * 1000)
    day = 86_400_000
    counter = LiveCounter(
        "acme", "calls", now_ms - day, now_ms + day, Decimal(5), Decimal("0.5"), "USD", False
    )
    writer.publish([counter], now_ms)
    key = live_usage_key(prefix, "acme", "calls", now_ms - day)
    assert client.hget(key, "quantity") == b"5"

    client.delete(lease_key(prefix))
    stale = LiveCounter(
        "acme", "calls", now_ms - day, now_ms + day, Decimal(2), Decimal("0.2"), "USD", False
    )
    with pytest.raises(LeaseLost):
        writer.publish([stale], now_ms)
    assert client.hget(key, "quantity") == b"5"


def test_an_empty_fence_writes_without_a_lease(client: redis.Redis, prefix: str) -> None:
    store = RedisIdempotencyStore(client, ttl_s=3_600, key_prefix=prefix)
    assert store.claim([Claim("acme", "src", "e1", "x|t|0|1", STARTED_MS)]) == [ClaimStatus.NEW]
