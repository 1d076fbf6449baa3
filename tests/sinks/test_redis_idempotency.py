"""Redis idempotency store against real redis-servers: claims, TTLs, key layout, outages.

Each test uses a key prefix of its own on the session's redis-server; the
outage tests start (and stop) private servers and never touch the shared one.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.idempotency import (
    DAY_MS,
    Claim,
    ClaimStatus,
    MemoryIdempotencyStore,
    claim_day,
    key_hash,
    pack_claims,
    token_tag,
)
from sinks.local_services import RunningService, free_port, start_redis, stop
from sinks.redis_idempotency import (
    IdempotencyError,
    IdempotencyUnavailable,
    RedisIdempotencyStore,
    StoreOptions,
    day_key,
    legacy_key,
    redact_url,
    refresh_slack_s,
)

integration = pytest.mark.integration

NEW, REPLAY, DUPLICATE = ClaimStatus.NEW, ClaimStatus.REPLAY, ClaimStatus.DUPLICATE
TTL_S = 3_600
LOGGER = "sinks.redis_idempotency"
# Event times only pick day buckets; Redis expiry runs on its own clock.
T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z
DAY0 = claim_day(T0)


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the session's redis-server (module-scoped: hypothesis reuses it)."""
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def store(client: redis.Redis, prefix: str) -> RedisIdempotencyStore:
    """A store on the session's redis-server under ``prefix``."""
    return RedisIdempotencyStore(client, ttl_s=TTL_S, key_prefix=prefix)


def claim(
    tenant: str = "acme",
    source: str = "api",
    id: str = "e1",
    token: str = "t1",
    time_ms: int = T0,
) -> Claim:
    """A claim with defaults for the parts a test does not care about."""
    return Claim(tenant, source, id, token, time_ms)


def sweep_key(prefix: str, day: int) -> str:
    """Where the day's sweep is recorded (see sinks.redis_idempotency, Expiry)."""
    return day_key(prefix, day).replace(":idem-day:", ":idem-sweep:")


def buckets(client: redis.Redis, prefix: str, day: int) -> dict[bytes, dict[bytes, bytes]]:
    """Every bucket of ``day``: key -> its fields and values."""
    keys = client.scan_iter(match=f"{day_key(prefix, day)}:*", count=1_000)
    return {key: client.hgetall(key) for key in keys}


# --- key layout (pure) -------------------------------------------------------


def test_day_keys_name_the_utc_date() -> None:
    assert day_key("meterwax", claim_day(0)) == "meterwax:idem-day:1970-01-01"
    assert day_key("p", claim_day(T0)) == "p:idem-day:2026-09-21"
    assert claim_day(T0 - T0 % DAY_MS - 1) == DAY0 - 1
    assert claim_day(-1) == -1
    assert day_key("p", -1) == "p:idem-day:1969-12-31"


def test_legacy_key_layout_is_the_one_written_before_day_buckets() -> None:
    assert (
        legacy_key("meterwax", "acme", "api-gw/eu-west-1", "9f1c")
        == "meterwax:idem:4:acme:16:api-gw/eu-west-1:9f1c"
    )
    assert legacy_key("p", "a:1", "b", "x") == "p:idem:3:a:1:1:b:x"
    # Characters, not bytes.
    assert legacy_key("p", "ü🚀", "", "") == "p:idem:2:ü🚀:0::"


@given(
    st.tuples(*[st.text(alphabet=":1a", max_size=4)] * 3),
    st.tuples(*[st.text(alphabet=":1a", max_size=4)] * 3),
)
def test_hashes_of_different_events_differ(
    one: tuple[str, str, str], other: tuple[str, str, str]
) -> None:
    # A tiny alphabet full of ':' and digits makes near-collisions likely.
    if one != other:
        assert key_hash(*one) != key_hash(*other)


def test_redact_url_hides_the_password() -> None:
    assert redact_url("redis://:sekret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("rediss://bob:p@ss:w@host/1") == "rediss://bob:***@host/1"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


@pytest.mark.parametrize(
    "options",
    [
        StoreOptions(ttl_s=0),
        StoreOptions(key_prefix=""),
        StoreOptions(retry_initial_s=0.0),
        StoreOptions(retry_max_s=0.01),
        StoreOptions(max_wait_s=-1.0),
        StoreOptions(chunk_size=0),
    ],
)
def test_rejects_options_that_cannot_work(options: StoreOptions) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        RedisIdempotencyStore.from_url("redis://127.0.0.1:1/0", **options)


# --- claims ------------------------------------------------------------------


@integration
def test_new_then_replay_for_same_token_then_duplicate_for_another(
    store: RedisIdempotencyStore,
) -> None:
    assert store.claim([claim(token="t1")]) == [NEW]
    assert store.claim([claim(token="t1")]) == [REPLAY]
    assert store.claim([claim(token="t2")]) == [DUPLICATE]
    # The first claimant keeps the event: a duplicate does not take it over.
    assert store.claim([claim(token="t1")]) == [REPLAY]
    # The same day of event time is the same event; another day is another one.
    assert store.claim([claim(token="t2", time_ms=T0 - T0 % DAY_MS)]) == [DUPLICATE]
    assert store.claim([claim(token="t2", time_ms=T0 + DAY_MS)]) == [NEW]


@integration
def test_within_one_batch_the_first_claim_wins(store: RedisIdempotencyStore) -> None:
    batch = [claim(token="t1"), claim(token="t2"), claim(token="t1"), claim(id="e2")]
    assert store.claim(batch) == [NEW, DUPLICATE, REPLAY, NEW]
    assert store.claim([]) == []


@integration
def test_tenants_are_isolated(store: RedisIdempotencyStore) -> None:
    same_event = [claim(tenant="acme"), claim(tenant="globex")]
    assert store.claim(same_event) == [NEW, NEW]
    assert store.claim([claim(tenant="globex", token="t2")]) == [DUPLICATE]


@integration
def test_ttl_is_set_and_refreshed_by_replays_only(
    store: RedisIdempotencyStore, client: redis.Redis, prefix: str
) -> None:
    keep = TTL_S + refresh_slack_s(TTL_S)
    store.claim([claim(token="t1")])
    (bucket,) = buckets(client, prefix, DAY0)
    keys = [bucket, day_key(prefix, DAY0), sweep_key(prefix, DAY0)]
    assert all(keep - 5 <= client.ttl(key) <= keep for key in keys)

    # The day's sweep started with the claim: it covers the bucket, so a replay
    # within the slack leaves its TTL alone (one command saved per claim).
    for key in keys:
        client.expire(key, 100)
    assert store.claim([claim(token="t1")]) == [REPLAY]
    assert client.ttl(bucket) <= 100

    # Once the sweep is older than the slack, a duplicate still changes nothing...
    since = int(client.time()[0]) - refresh_slack_s(TTL_S)
    client.set(sweep_key(prefix, DAY0), f"{since} 1", ex=100)
    assert store.claim([claim(token="t2")]) == [DUPLICATE]
    assert all(client.ttl(key) <= 100 for key in keys)

    # ...and a replay sets the TTLs again and starts a new sweep.
    assert store.claim([claim(token="t1")]) == [REPLAY]
    assert all(keep - 5 <= client.ttl(key) <= keep for key in keys)
    started, swept = client.get(sweep_key(prefix, DAY0)).split()
    assert int(started) > since and swept == b"1"


@integration
def test_every_bucket_gets_a_ttl_from_its_claims_or_the_sweep(
    client: redis.Redis, prefix: str
) -> None:
    keep = TTL_S + refresh_slack_s(TTL_S)
    store = RedisIdempotencyStore(client, ttl_s=TTL_S, key_prefix=prefix)
    n = 30_000  # 750 buckets: more than one call sweeps
    ids = [str(i) for i in range(n)]
    for start in range(0, n, 5_000):
        store.claim([claim(id=i) for i in ids[start : start + 5_000]])
    day = buckets(client, prefix, DAY0)
    assert len(day) == n // 40 + 1
    assert all(keep - 10 <= client.ttl(key) <= keep for key in day)

    # A stale sweep: the next calls sweep every bucket again, whichever they claim in.
    for key in day:
        client.expire(key, 100)
    since = int(client.time()[0]) - refresh_slack_s(TTL_S)
    client.set(sweep_key(prefix, DAY0), f"{since} {len(day)}", ex=100)
    for i in range(2):
        assert store.claim([claim(id=f"more-{i}")]) == [NEW]
    assert all(keep - 10 <= client.ttl(key) <= keep for key in day)


@integration
def test_a_split_that_moves_no_claim_or_every_claim_leaves_no_key_without_a_ttl(
    store: RedisIdempotencyStore, client: redis.Redis, prefix: str
) -> None:
    # Bucket 0 splits at its 40th claim: those whose hash is odd move to bucket 1.
    def parity(id: str) -> int:
        return int.from_bytes(key_hash("acme", "api", id)[:4], "big") % 2

    for moving in (0, 1):
        day_prefix = f"{prefix}-{moving}"
        ids = [i for i in map(str, range(400)) if parity(i) == moving][:40]
        store = RedisIdempotencyStore(client, ttl_s=TTL_S, key_prefix=day_prefix)
        assert store.claim([claim(id=i) for i in ids]) == [NEW] * 40
        day = buckets(client, day_prefix, DAY0)
        assert len(day) == 2
        assert all(client.ttl(key) > 0 for key in day)
        # The bucket left empty holds a placeholder; later claims there are kept as usual.
        later = [i for i in map(str, range(400, 800)) if parity(i) != moving][:3]
        assert store.claim([claim(id=i) for i in later]) == [NEW] * 3
        assert store.claim([claim(id=i, token="t2") for i in ids + later]) == [DUPLICATE] * 43
        assert all(client.ttl(key) > 0 for key in client.scan_iter(match=f"{day_prefix}:*"))


@integration
def test_claims_are_forgotten_after_the_ttl(client: redis.Redis, prefix: str) -> None:
    store = RedisIdempotencyStore(client, ttl_s=1, key_prefix=prefix)
    assert store.claim([claim(token="t1")]) == [NEW]
    assert store.claim([claim(token="t2")]) == [DUPLICATE]
    time.sleep(2.2)
    assert store.claim([claim(token="t2")]) == [NEW]
    assert store.claim([claim(token="t1")]) == [DUPLICATE]


@integration
def test_keys_and_values_are_stored_as_documented(
    store: RedisIdempotencyStore, client: redis.Redis, prefix: str
) -> None:
    store.claim([claim("acme", "api-gw/eu", "9f1c", "inst|orders|3|42"), claim("globex")])

    every = set(client.scan_iter(match=f"{prefix}:*"))
    day = day_key(prefix, DAY0).encode()
    sweep = sweep_key(prefix, DAY0).encode()
    assert every == {day, day + b":0", sweep}
    assert client.get(day) == b"2"
    started, swept = client.get(sweep).split()
    assert abs(int(started) - int(client.time()[0])) <= 5 and swept == b"1"
    assert client.hgetall(day + b":0") == {
        key_hash("acme", "api-gw/eu", "9f1c"): token_tag("inst|orders|3|42"),
        key_hash("globex", "api", "e1"): token_tag("t1"),
    }
    # Nothing in the layout before day buckets.
    assert not list(client.scan_iter(match=f"{prefix}:idem:*"))


@integration
def test_a_day_grows_buckets_that_stay_small(
    store: RedisIdempotencyStore, client: redis.Redis, prefix: str
) -> None:
    n = 9_000
    ids = [str(i) for i in range(n)]
    # Spread over a day of event time, in chunks: splits happen between and within scripts.
    times = [T0 - T0 % DAY_MS + i * (DAY_MS // n) for i in range(n)]
    for start in range(0, n, 700):
        part = range(start, min(n, start + 700))
        assert store.claim([claim(id=ids[i], time_ms=times[i]) for i in part]) == [NEW] * len(part)

    day = buckets(client, prefix, DAY0)
    assert len(day) == n // 40 + 1
    assert sum(len(fields) for fields in day.values()) == n
    assert max(len(fields) for fields in day.values()) <= 128
    assert {client.object("encoding", key) for key in day} == {b"listpack"}

    again = [claim(id=ids[i], token="t1" if i % 2 else "t2", time_ms=times[i]) for i in range(n)]
    assert store.claim(again) == [REPLAY if i % 2 else DUPLICATE for i in range(n)]


@integration
def test_unicode_and_colons_do_not_collide(store: RedisIdempotencyStore) -> None:
    parts = [
        ("a:1", "b", "x"),
        ("a", "1:b", "x"),
        ("a", "1", "b:x"),
        ("a:1:b", "", "x"),
        ("ten ant", "sour ce", "i d"),
        ("🚀", "ß", "\"'`"),
        ("🚀:", "ß", "\"'`"),
        ("\ud800", "lone surrogate", "x"),
        ("*", "[a-z]", "?"),
    ]
    claims = [claim(t, s, i, f"tok 🚀 {n}:'\"") for n, (t, s, i) in enumerate(parts)]
    assert store.claim(claims) == [NEW] * len(parts)
    assert store.claim(claims) == [REPLAY] * len(parts)
    assert store.claim([c._replace(token="other") for c in claims]) == [DUPLICATE] * len(parts)


@integration
def test_large_batches_come_back_in_order_in_chunks(
    store: RedisIdempotencyStore, client: redis.Redis
) -> None:
    n = 12_000
    store.claim([claim(id=str(i), token="first") for i in range(0, n, 2)])

    def token(i: int) -> str:
        return "first" if i % 4 == 0 else "second"

    expected = [NEW if i % 2 else REPLAY if i % 4 == 0 else DUPLICATE for i in range(n)]
    calls_before = _evalsha_calls(client)
    assert store.claim([claim(id=str(i), token=token(i)) for i in range(n)]) == expected
    assert _evalsha_calls(client) - calls_before == 3  # chunks of 5,000


def _evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0})
    return int(stats["calls"])


tenants = st.sampled_from(["a", "a:1", "1", ""])
sources = st.sampled_from(["b", "1:b", ":"])
ids = st.sampled_from(["x", "b:x"])
tokens = st.sampled_from(["t1", "t2", "t:1"])
times = st.sampled_from([T0, T0 + 1, T0 + DAY_MS, T0 - 3 * DAY_MS])
batches = st.lists(
    st.lists(st.builds(Claim, tenants, sources, ids, tokens, times), max_size=12), max_size=6
)


@integration
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches, chunk_size=st.sampled_from([1, 3, 5_000]))
def test_same_results_as_the_memory_store(
    client: redis.Redis, batches: list[list[Claim]], chunk_size: int
) -> None:
    redis_store = RedisIdempotencyStore(
        client, ttl_s=60, key_prefix=f"test-{uuid.uuid4().hex}", chunk_size=chunk_size
    )
    memory_store = MemoryIdempotencyStore()
    for batch in batches:
        assert redis_store.claim(batch) == memory_store.claim(batch)


# --- keys of the layout before day buckets -----------------------------------------


@integration
def test_keys_of_the_old_layout_are_honoured_for_the_ttl(client: redis.Redis, prefix: str) -> None:
    # What the store before day buckets left: one key per event, the token as value.
    client.set(legacy_key(prefix, "acme", "api", "old1"), "t1", ex=600)
    client.set(legacy_key(prefix, "acme", "api", "old2"), "t1", ex=600)
    store = RedisIdempotencyStore(client, ttl_s=TTL_S, key_prefix=prefix)
    store.ping()
    assert 0 < client.ttl(f"{prefix}:idem-legacy") <= TTL_S

    batch = [claim(id="old1", token="t1"), claim(id="old2", token="t2"), claim(id="new")]
    assert store.claim(batch) == [REPLAY, DUPLICATE, NEW]
    # A replay moved to the day bucket (and left the old key to expire); nothing
    # new went into the old layout.
    client.delete(legacy_key(prefix, "acme", "api", "old1"))
    assert store.claim([claim(id="old1", token="t1"), claim(id="old1", token="t3")]) == [
        REPLAY,
        DUPLICATE,
    ]
    assert not client.exists(legacy_key(prefix, "acme", "api", "new"))

    # A later start reads what the first one found, without scanning again.
    again = RedisIdempotencyStore(client, ttl_s=TTL_S, key_prefix=prefix)
    again.ping()
    assert again.claim([claim(id="old2", token="t2")]) == [DUPLICATE]


@integration
def test_old_layout_lookups_end_with_the_ttl_and_never_start_on_a_new_prefix(
    client: redis.Redis, prefix: str
) -> None:
    store = RedisIdempotencyStore(client, ttl_s=1, key_prefix=prefix)
    store.ping()
    # Nothing of the old layout at the first start: later such keys are not ours.
    client.set(legacy_key(prefix, "acme", "api", "e1"), "t1")
    assert store.claim([claim(token="t2")]) == [NEW]

    other = f"{prefix}-upgraded"
    client.set(legacy_key(other, "acme", "api", "e1"), "t1")
    upgraded = RedisIdempotencyStore(client, ttl_s=1, key_prefix=other)
    upgraded.ping()
    assert upgraded.claim([claim(id="e1", token="t2")]) == [DUPLICATE]
    time.sleep(1.2)
    # The old key would have expired by now, had it been written with this TTL.
    assert upgraded.claim([claim(id="e1", token="t3")]) == [NEW]


# --- start-up checks and errors ------------------------------------------------


@integration
def test_ping(store: RedisIdempotencyStore) -> None:
    store.ping()


def test_ping_reports_an_unreachable_redis_at_once() -> None:
    store = RedisIdempotencyStore.from_url(f"redis://:sekret@127.0.0.1:{free_port()}/0")
    with pytest.raises(IdempotencyUnavailable, match="unavailable") as info:
        store.ping()
    assert "sekret" not in _everything(info.value)


@integration
def test_wrong_credentials_fail_at_once(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    url = redis_url.replace("redis://", f"redis://nobody-{uuid.uuid4().hex}:sekret@")
    store = RedisIdempotencyStore.from_url(url)
    with pytest.raises(IdempotencyError, match="AuthenticationError") as info:
        store.claim([claim()])
    assert not isinstance(info.value, IdempotencyUnavailable)
    assert "sekret" not in _everything(info.value)
    assert not [r for r in caplog.records if r.name == LOGGER]


@integration
def test_a_foreign_key_under_the_prefix_fails_at_once(
    store: RedisIdempotencyStore,
    client: redis.Redis,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client.rpush(day_key(prefix, DAY0), "not ours")
    with pytest.raises(IdempotencyError, match=r"WRONGTYPE.*key prefix of its own"):
        store.claim([claim()])
    assert not [r for r in caplog.records if r.name == LOGGER]


# --- outages -----------------------------------------------------------------


@integration
def test_claim_waits_until_redis_is_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    running: list[RunningService] = [start_redis(tmp_path, port)]
    store = RedisIdempotencyStore.from_url(
        f"redis://127.0.0.1:{port}/0",
        retry_initial_s=0.05,
        retry_max_s=0.2,
        max_wait_s=30,  # a safety net: the test fails instead of hanging
    )

    def restart_later() -> None:
        time.sleep(1.0)
        running.append(start_redis(tmp_path, port))

    restarter = threading.Thread(target=restart_later)
    try:
        assert store.claim([claim(token="t1")]) == [NEW]
        stop(running.pop().pid)
        restarter.start()
        caplog.set_level(logging.WARNING, logger=LOGGER)
        # The restarted server is empty (no persistence): both are new to it.
        assert store.claim([claim(token="t2"), claim(id="e2")]) == [NEW, NEW]
        restarter.join()
        assert store.claim([claim(token="t2")]) == [REPLAY]
    finally:
        if restarter.ident is not None:
            restarter.join()
        for service in running:
            stop(service.pid)

    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    retries = [m for m in messages if "retrying 2 claims" in m]
    assert len(retries) >= 3
    assert all(f"127.0.0.1:{port}/0" in m for m in messages)
    assert "is back after" in messages[-1]


@integration
def test_claim_waits_out_a_failover(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    primary = start_redis(tmp_path / "primary")
    replica = start_redis(tmp_path / "replica")

    def replicaof(host: str, port: str) -> None:
        with redis.Redis(port=replica.port) as admin:
            admin.replicaof(host, port)

    promoter = threading.Timer(0.5, replicaof, args=("NO", "ONE"))
    try:
        # The address still points at a server that was demoted to a replica.
        replicaof("127.0.0.1", str(primary.port))
        store = RedisIdempotencyStore.from_url(
            f"redis://127.0.0.1:{replica.port}/0",
            retry_initial_s=0.05,
            retry_max_s=0.2,
            max_wait_s=30,  # a safety net: the test fails instead of hanging
        )
        caplog.set_level(logging.WARNING, logger=LOGGER)
        promoter.start()
        assert store.claim([claim()]) == [NEW]
    finally:
        if promoter.ident is not None:
            promoter.join()
        stop(replica.pid)
        stop(primary.pid)
    assert any("ReadOnlyError" in r.getMessage() for r in caplog.records if r.name == LOGGER)


@integration
def test_backoff_doubles_up_to_its_cap_and_never_gives_up_by_default(tmp_path: Path) -> None:
    port = free_port()
    delays: list[float] = []
    running: list[RunningService] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 7:
            running.append(start_redis(tmp_path, port))

    store = RedisIdempotencyStore.from_url(
        f"redis://127.0.0.1:{port}/0", retry_initial_s=0.1, retry_max_s=0.5, sleep=sleep
    )
    try:
        assert store.claim([claim()]) == [NEW]
    finally:
        for service in running:
            stop(service.pid)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5])


def test_gives_up_after_max_wait_without_showing_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    store = RedisIdempotencyStore.from_url(
        f"redis://:sekret@127.0.0.1:{port}/0", retry_initial_s=0.05, max_wait_s=0.5
    )
    caplog.set_level(logging.WARNING, logger=LOGGER)
    started = time.monotonic()
    with pytest.raises(IdempotencyUnavailable) as info:
        store.claim([claim()])
    assert 0.5 <= time.monotonic() - started < 5
    assert f"127.0.0.1:{port}/0" in str(info.value)
    assert "sekret" not in _everything(info.value)
    assert caplog.records
    assert "sekret" not in caplog.text


def test_invalid_url_does_not_show_the_password() -> None:
    with pytest.raises(ValueError, match="invalid Redis URL") as info:
        RedisIdempotencyStore.from_url("redis://:sekret@127.0.0.1:notaport/0")
    assert "sekret" not in _everything(info.value)


def _everything(exc: BaseException) -> str:
    """The messages of ``exc`` and of every exception chained to it, as a log shows them."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return "".join(line for e in seen for line in traceback.format_exception_only(e))


# --- claims begun now, read later ---------------------------------------------


@integration
def test_a_claim_begun_and_read_later_answers_as_a_claim_made_at_once(
    client: redis.Redis, prefix: str
) -> None:
    store = RedisIdempotencyStore(client, ttl_s=TTL_S, key_prefix=prefix)
    first = [claim(id=str(i)) for i in range(50)]
    again = [claim(id=str(i), token="t1" if i % 2 else "t2") for i in range(0, 100, 2)]
    # The script is not loaded yet: the begun claim falls back to claiming at once.
    client.script_flush()
    started = store.start_claim_packed(pack_claims(first), lambda: first)
    assert started() == b"0" * 50
    # Loaded: sent now, answered on reading; two in flight on two connections.
    one = store.start_claim_packed(pack_claims(again), lambda: again)
    other = store.start_claim_packed(pack_claims([claim(id="x")]), lambda: [claim(id="x")])
    expected = [REPLAY if i % 2 else DUPLICATE if i < 50 else NEW for i in range(0, 100, 2)]
    assert one() == bytes(ord(str(int(status))) for status in expected)
    assert other() == b"0"
    # What they claimed is held: the same claims again are replays or duplicates.
    replayed = [DUPLICATE if status is DUPLICATE else REPLAY for status in expected]
    assert store.claim(again) == replayed


@integration
def test_a_begun_claim_whose_reply_is_lost_is_claimed_again(
    client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisIdempotencyStore(client, ttl_s=TTL_S, key_prefix=prefix)
    claims = [claim(id=str(i)) for i in range(20)]
    store.claim(claims[:1])  # loads the script
    digits = store.start_claim_packed(pack_claims(claims), lambda: claims)
    deadline = time.monotonic() + 5
    while client.get(day_key(prefix, DAY0)) != b"20" and time.monotonic() < deadline:
        time.sleep(0.01)
    # The script ran; then the connection fails before its reply is read.
    lost = redis.exceptions.ConnectionError("connection reset")
    real = redis.connection.Connection.read_response
    calls = iter([lost])

    def read_response(self: redis.connection.Connection, *args: object, **kwargs: object) -> object:
        failure = next(calls, None)
        if failure is not None:
            raise failure
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "read_response", read_response)
    # Counted all the same: claiming again finds our own tokens.
    assert digits() == b"1" * 20
    assert store.claim([claim(id=str(i), token="t2") for i in range(20)]) == [DUPLICATE] * 20


@integration
def test_a_sweep_puts_a_placeholder_in_a_bucket_that_is_gone(
    store: RedisIdempotencyStore, client: redis.Redis, prefix: str
) -> None:
    # An operator deleted a bucket's last claims: a claim made there later must not
    # make it again without a TTL, so the next sweep gives it a placeholder.
    assert store.claim([claim(id=str(i)) for i in range(100)]) == [NEW] * 100
    gone = f"{day_key(prefix, DAY0)}:1"
    client.delete(gone)
    since = int(client.time()[0]) - refresh_slack_s(TTL_S)
    client.set(sweep_key(prefix, DAY0), f"{since} 3", ex=100)
    store.claim([claim(id="another")])
    assert client.hgetall(gone) == {b"": b""}
    assert client.ttl(gone) > TTL_S
    # The claims it held are gone with it; those of the other buckets are kept.
    kept = store.claim([claim(id=str(i), token="t2") for i in range(100)])
    assert set(kept) == {NEW, DUPLICATE} and 0 < kept.count(NEW) < 100
