"""Full mode on both engines: MeteringLogic against NativeMeteringLogic, on real Redis and chDB.

The same random CloudEvents (true copies within and across partitions, late
and too-late events, every aggregation, quotas on the way) are fed, batch by
batch, to the Python engine's and the native engine's metering step, each with
its own Redis idempotency store (same layout, its own key prefix), live usage,
seeding and event log. The schedule crashes and restores from a snapshot (the
batches since are read again: Redis REPLAYs) and reruns from the start as a new
incarnation (Redis DUPLICATEs). After every batch both must report the same
counts (accepted, duplicates, Redis duplicates, late), emit the same rated
windows, rejections, live counters and quota events; at the end both Redis
stores hold the same claims and both event logs the same rows.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
import redis
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config.clock import FixedClock
from config.pricing import Plan, PlanVersion, PricingCatalog, Quota, Subscription
from dataflows.metering_step import (
    Admitted,
    AdmittedRows,
    LiveUpdate,
    MeteringLogic,
    NativeMeteringLogic,
    Output,
    ShardBatch,
    StepContext,
)
from dataflows.stats import RunStats
from operators.contributions import Contribution
from operators.model import RatedColumns, RatedWindow, RawMessage, Rejection
from operators.native_shard import NativeShardState, NativeSplitter
from operators.period_rating import PeriodKey, PeriodRef
from operators.shard import ShardState
from operators.sharding import ShardSplitter
from operators.windowing import WindowConfig
from sinks.clickhouse import ClickHouseWriter, connect
from sinks.clickhouse_schema import migrate
from sinks.redis_idempotency import RedisIdempotencyStore
from tests.native.test_shard_differential import (
    AGGREGATIONS,
    CATALOG,
    MINUTE,
    NAMES,
    NATIVE_PARSER,
    PARSE_NOW_MS,
    PARTITION,
    PARTITIONS,
    PYTHON_PARSER,
    RATED_AT_MS,
    SECOND,
    SHARDS,
    Spec,
    _prices,
    build_partitions,
)
from tests.operators.conftest import JAN_2026_MS, NOV_2026_MS

pytestmark = pytest.mark.integration

CONFIG = WindowConfig(MINUTE, 10 * SECOND, 10 * MINUTE, 0)
ARRIVED_MS = RATED_AT_MS - 5 * SECOND
HORIZON_MS = 2 * MINUTE
QUOTAS = {
    "tokens": Quota(
        soft_limit=Decimal(40), hard_limit=Decimal(200), thresholds=(Decimal(50), Decimal(80))
    ),
    "completions": Quota(hard_limit=Decimal(3)),
    "active_users": Quota(soft_limit=Decimal(2)),
}
PRICING = PricingCatalog(
    plans={
        "starter": Plan(
            id="starter",
            currency="USD",
            versions=(
                PlanVersion("2026-01", JAN_2026_MS, _prices("0.000002"), quotas=QUOTAS),
                PlanVersion("2026-11", NOV_2026_MS, _prices("0.0000018"), quotas=QUOTAS),
            ),
        )
    },
    subscriptions={"globex": Subscription("starter", anchor_day=15, timezone="Europe/Berlin")},
    default_plan="starter",
)
STEP = st.one_of(
    st.tuples(st.just("batch"), st.integers(0, PARTITIONS - 1), st.integers(1, 8)),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("crash")),  # back to the last snapshot: the batches since come again
    st.tuples(st.just("rerun")),  # a new incarnation reads everything again
)


def stored_elsewhere(incarnation: str, periods: Sequence[PeriodRef]) -> dict[PeriodKey, Any]:
    """What another incarnation stored: some tokens and users in every period asked for."""
    out: dict[PeriodKey, Contribution] = {}
    for ref in periods:
        key = PeriodKey(ref.tenant, ref.meter, ref.start_ms, "2026-11")
        if ref.meter == "tokens":
            out[key] = Contribution(Decimal("30.5"), Decimal("0.01"))
        elif ref.meter == "active_users":
            out[key] = Contribution(Decimal(2), distinct_values=frozenset({"1", "u9"}))
    return out


class Engine:
    """One engine's metering steps (one per shard), Redis store and what they emitted."""

    def __init__(self, native: bool, client: redis.Redis, writer: ClickHouseWriter) -> None:
        self.native = native
        self.store = RedisIdempotencyStore(client, key_prefix=f"diff-{uuid.uuid4().hex}")
        self.writer = writer
        self.stats = RunStats()
        self.logics: dict[str, Any] = {}
        self.snapshots: dict[str, bytes | None] = {}
        self.instance = "first"
        self.start(None)

    def context(self) -> StepContext[Any]:
        instance = self.instance
        shared: dict[str, Any] = {
            "pricing": PRICING,
            "stats": self.stats,
            "snapshots": True,
            "idempotency": self.store,
            "live_usage": True,
            "clock": FixedClock(RATED_AT_MS),
            "seeds": stored_elsewhere,
        }
        if self.native:
            return StepContext(
                new_state=lambda: NativeShardState(
                    CONFIG, CATALOG, HORIZON_MS, instance, NAMES, incarnation=instance
                ),
                reconfigure=lambda s: s.reconfigure(CONFIG, CATALOG, HORIZON_MS, NAMES),
                **shared,
            )
        return StepContext(
            new_state=lambda: ShardState(
                CONFIG, AGGREGATIONS, HORIZON_MS, instance, NAMES, incarnation=instance
            ),
            reconfigure=lambda s: s.reconfigure(CONFIG, AGGREGATIONS, HORIZON_MS, NAMES),
            **shared,
        )

    def start(self, snapshots: Mapping[str, bytes | None] | None) -> None:
        """Steps for every shard, from ``snapshots`` (None: afresh)."""
        context = self.context()
        logic = NativeMeteringLogic if self.native else MeteringLogic
        self.logics = {
            str(s): logic(context, None if snapshots is None else snapshots[str(s)])
            for s in range(SHARDS)
        }

    def snapshot(self) -> None:
        self.snapshots = {key: logic.snapshot() for key, logic in self.logics.items()}

    def feed(self, key: str, batch: Any) -> list[Output]:
        out, _ = self.logics[key].on_batch([batch])
        return self.log(list(out))

    def end(self) -> list[Output]:
        return self.log([o for logic in self.logics.values() for o in logic.on_eof()[0]])

    def log(self, out: list[Output]) -> list[Output]:
        """Write the event log items to ClickHouse; the rest, to compare."""
        events = [(o.events, o.at_ms) for o in out if isinstance(o, Admitted)]
        rows = [(o.rows, o.size) for o in out if isinstance(o, AdmittedRows)]
        self.writer.write_events(events, {m.slug: m.aggregation.value for m in CATALOG.meters})
        self.writer.write_event_rows(rows)
        return [o for o in out if not isinstance(o, (Admitted, AdmittedRows))]


def same_stats(native: RunStats, python: RunStats) -> bool:
    """The same counts and periods (the native engine's as exact texts, Python's as Decimals)."""
    return (
        replace(native, periods={}) == replace(python, periods={})
        and native.rated_periods() == python.rated_periods()
    )


def outcome(out: list[Output]) -> tuple[list[RatedWindow], list[Rejection], list[Any], list[Any]]:
    live = [o for o in out if isinstance(o, LiveUpdate)]
    return (
        # The native engine's revisions leave as columns: compared row by row.
        [
            w
            for o in out
            for w in (o.windows() if isinstance(o, RatedColumns) else [o])
            if isinstance(w, RatedWindow)
        ],
        [o for o in out if isinstance(o, Rejection)],
        [c for u in live for c in u.counters],
        [q for u in live for q in u.quota_events],
    )


class Rig:
    """Both engines fed the same input, compared after every batch."""

    def __init__(self, client: redis.Redis, python: ClickHouseWriter, native: ClickHouseWriter):
        self.python = Engine(False, client, python)
        self.native = Engine(True, client, native)
        self.python_split = ShardSplitter(SHARDS)
        self.native_split = NativeSplitter(CATALOG, SHARDS)
        self.snapshot_read = [0] * PARTITIONS
        self.verdicts = {"replays": 0, "redis_duplicates": 0, "quota_events": 0, "counters": 0}

    def batch(self, p: int, batch: list[RawMessage]) -> None:
        parsed = PYTHON_PARSER.parse(batch, PARSE_NOW_MS)
        columns = NATIVE_PARSER.columns([m.payload for m in batch], PARSE_NOW_MS)
        native_parts = self.native_split.split(NAMES[p], batch, columns)
        for key, part in self.python_split.split(parsed.events).items():
            shard_batch = ShardBatch(NAMES[p], parsed.max_time_ms, part.events, part.progress_ms)
            expected = self.python.feed(key, shard_batch)
            got = self.native.feed(key, pickle.loads(pickle.dumps(native_parts[key])))
            assert outcome(got) == outcome(expected)
            # Latency samples: when some of the batch's messages arrived, as for Python.
            arrived = {m.arrived_ms for m in batch}
            for engine_out in (expected, got):
                for update in (o for o in engine_out if isinstance(o, LiveUpdate)):
                    assert update.arrivals_ms and set(update.arrivals_ms) <= arrived
            assert same_stats(self.native.stats, self.python.stats)
            _, _, counters, quota_events = outcome(expected)
            self.verdicts["counters"] += len(counters)
            self.verdicts["quota_events"] += len(quota_events)

    def end(self) -> None:
        assert outcome(self.native.end()) == outcome(self.python.end())
        assert same_stats(self.native.stats, self.python.stats)
        self.verdicts["redis_duplicates"] = self.python.stats.redis_duplicates


def claims_held(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` (prefix cut off) and what it holds."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{prefix}:*"):
        name = key[len(prefix) :]
        out[name] = client.hgetall(key) if client.type(key) == b"hash" else client.get(key)
        if name.startswith(b":idem-sweep:"):
            # When a day's TTL sweep started (Redis's clock) differs from run to run.
            out[name] = out[name].split()[1]
    return out


def event_log(client: Client, database: str) -> list[tuple[Any, ...]]:
    rows = client.query(f"SELECT * FROM `{database}`.accepted_events ORDER BY ALL").result_rows
    return [tuple(row) for row in rows]


@pytest.fixture
def native_database(chdb_dsn: str) -> Iterator[str]:
    database = f"test_{uuid.uuid4().hex}"
    client = connect(chdb_dsn, database)
    migrate(client, database)
    yield database
    client.command(f"DROP DATABASE IF EXISTS `{database}`")


def play(
    drawn: list[tuple[int, list[Spec]]],
    schedule: list[Any],
    redis_url: str,
    ch_client: Client,
    databases: tuple[str, str],
) -> Rig:
    client = redis.Redis.from_url(redis_url)
    for database in databases:
        ch_client.command(f"TRUNCATE TABLE `{database}`.accepted_events")
    python_db, native_db = databases
    rig = Rig(
        client, ClickHouseWriter(ch_client, python_db), ClickHouseWriter(ch_client, native_db)
    )
    partitions = build_partitions(drawn)
    read = [0] * PARTITIONS

    def batch(p: int, size: int) -> None:
        payloads = partitions[p][read[p] : read[p] + size]
        messages = [
            RawMessage(data, *NAMES[p], read[p] + i, arrived_ms=ARRIVED_MS + read[p] + i)
            for i, data in enumerate(payloads)
        ]
        read[p] += len(payloads)
        if messages:
            rig.batch(p, messages)

    for step in schedule:
        match step:
            case ("batch", p, size):
                batch(p, size)
            case ("snapshot",):
                for engine in (rig.python, rig.native):
                    engine.snapshot()
                rig.snapshot_read = list(read)
            case ("crash",) if rig.python.snapshots:
                for engine in (rig.python, rig.native):
                    engine.start(engine.snapshots)
                rig.verdicts["replays"] += sum(read) - sum(rig.snapshot_read)
                read[:] = rig.snapshot_read
            case ("rerun",):
                instance = f"run-{uuid.uuid4().hex[:6]}"
                for engine in (rig.python, rig.native):
                    engine.instance, engine.snapshots = instance, {}
                    engine.start(None)
                read[:] = [0] * PARTITIONS
    for p in range(PARTITIONS):
        batch(p, len(partitions[p]))
    rig.end()
    assert claims_held(client, rig.native.store._prefix) == claims_held(
        client, rig.python.store._prefix
    )
    logged = event_log(ch_client, python_db)
    assert event_log(ch_client, native_db) == logged
    rig.verdicts["event_rows"] = len(logged)
    return rig


# Quotas crossed, copies across partitions, a crash that replays, then a rerun.
QUOTA_RUN = [
    (
        0,
        [
            Spec("acme", "llm.completion", SECOND, 0, False, "25", '"gpt"', None),
            Spec("acme", "api.request", SECOND, 0, False, "0", "1", None),
            Spec("acme", "api.request", 0, 0, False, "0", '"u3"', None),
            Spec("acme", "llm.completion", SECOND, 0, False, "1.50", '"claude"', None),
            Spec("acme", "llm.completion", 0, 0, False, "0", '"gpt"', 0),
            Spec("acme", "api.request", 2 * MINUTE, 0, False, "0", '"u2"', None),
        ],
    ),
    (0, [Spec("globex", "seats.snapshot", 0, 0, False, "3", '"x"', None)]),
    (-30 * MINUTE, [Spec("acme", "storage.snapshot", 0, 0, False, "2.5", '"x"', 1)]),
]


# Snapshot, crash back to it, then rerun as a new incarnation: replays and duplicates.
QUOTA_SCHEDULE: list[Any] = [
    ("batch", 0, 3),
    ("snapshot",),
    ("batch", 0, 2),
    ("batch", 2, 1),
    ("crash",),
    ("batch", 0, 5),
    ("rerun",),
    ("batch", 0, 3),
]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    drawn=st.lists(PARTITION, min_size=PARTITIONS, max_size=PARTITIONS),
    schedule=st.lists(STEP, max_size=30),
)
@example(drawn=QUOTA_RUN, schedule=QUOTA_SCHEDULE)
def test_native_full_mode_claims_logs_and_counts_as_the_python_engine(
    drawn: list[tuple[int, list[Spec]]],
    schedule: list[Any],
    redis_url: str,
    ch_client: Client,
    ch_database: str,
    native_database: str,
) -> None:
    play(drawn, schedule, redis_url, ch_client, (ch_database, native_database))


def test_the_scenario_reaches_replays_duplicates_and_quotas(
    redis_url: str, ch_client: Client, ch_database: str, native_database: str
) -> None:
    rig = play(QUOTA_RUN, QUOTA_SCHEDULE, redis_url, ch_client, (ch_database, native_database))
    assert rig.verdicts["replays"] > 0
    assert rig.verdicts["redis_duplicates"] > 0
    assert rig.verdicts["quota_events"] > 0
    assert rig.verdicts["event_rows"] > 0
    assert rig.verdicts["counters"] > 0
