"""The native split and shard against their specification, operators/sharding.py and shard.py.

The same CloudEvents (several input partitions, some far behind the others,
true copies within and across partitions, late and too-late events, events
from 2000-01-01, a month and price-version boundary, every aggregation,
group-by values that are numbers as written) are parsed by both parsers and
fed, under one random schedule (batch cuts, interleaving, wall-clock quiet
time, snapshot-and-restore), to ``ShardSplitter`` + ``ShardState`` and to
``NativeSplitter`` + ``NativeShardState``. At every step both must make the
same screening decisions (fresh, late, duplicate, too-late rejections with
their detail), emit the same window revisions (quantities equal as exact
Decimals, what the rating merges) and rate them to the same amounts, with the
same watermark and wake-up time.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from config.meters import MeterCatalog
from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    PackagePrice,
    Plan,
    PlanVersion,
    PricingCatalog,
    Subscription,
    Tier,
    UnitPrice,
    VolumePrice,
)
from operators._native import Revisions
from operators.aggregation import LatestAccumulator, UniqueCountAccumulator
from operators.model import RatedWindow, RawMessage, WindowUsage
from operators.money import EXACT
from operators.native_parse import NativeParser
from operators.native_shard import NativeShardState, NativeSplitter, revision_usages
from operators.parse import MIN_TIME_MS, BatchParser, ParserConfig
from operators.shard import ShardState
from operators.sharding import ShardSplitter
from operators.windowing import WindowConfig
from tests.operators.conftest import JAN_2026_MS, NOV_2026_MS, aggregations, build_meter_catalog

SECOND = 1_000
MINUTE = 60 * SECOND
PARTITIONS = 3
SHARDS = 3
NAMES = [("usage", p) for p in range(PARTITIONS)]
TENANTS = ("acme", "globex", "initech", "umbrella")
# Parsing's wall clock: after every event time drawn, so none is in the future.
PARSE_NOW_MS = NOV_2026_MS + 3 * 24 * 60 * MINUTE
RATED_AT_MS = PARSE_NOW_MS

CATALOG: MeterCatalog = build_meter_catalog()
AGGREGATIONS = aggregations(CATALOG)
PYTHON_PARSER = BatchParser(ParserConfig(meters=CATALOG, known_tenant=set(TENANTS).__contains__))
NATIVE_PARSER = NativeParser(CATALOG, TENANTS)


def _prices(unit: str) -> dict[str, MeterPrice]:
    return {
        "tokens": MeterPrice(
            GraduatedPrice((Tier(Decimal(1000), Decimal(unit)), Tier(None, Decimal("0.0000007")))),
            free_allowance=Decimal(10),
        ),
        "completions": MeterPrice(UnitPrice(Decimal("0.00012"))),
        "storage_gb": MeterPrice(UnitPrice(Decimal("0.021")), maximum=Decimal(50)),
        "active_users": MeterPrice(PackagePrice(Decimal(3), Decimal("4.5"))),
        "seats": MeterPrice(VolumePrice((Tier(Decimal(5), Decimal(7)), Tier(None, Decimal(6))))),
    }


PRICING = PricingCatalog(
    plans={
        "starter": Plan(
            id="starter",
            currency="USD",
            versions=(
                PlanVersion("2026-01", JAN_2026_MS, _prices("0.000002")),
                PlanVersion("2026-11", NOV_2026_MS, _prices("0.0000018")),
            ),
        )
    },
    # globex's periods start on the 15th in Berlin; the others' on the 1st (UTC).
    subscriptions={"globex": Subscription("starter", anchor_day=15, timezone="Europe/Berlin")},
    default_plan="starter",
)

# Exact number texts: trailing zeros, nine fractional digits, exponents, 17 integer digits.
NUMBERS = st.one_of(
    st.integers(0, 10**6).map(str),
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**9 - 1)).map(lambda t: f"{t[0]}.{t[1]:09d}"),
    st.sampled_from(["1.50", "0.1", "0.000000001", "99999999999999999.999999999", "1e3", "25E-2"]),
)
GROUP_VALUES = st.sampled_from(['"gpt"', '"claude"', "1", "1.0", '"1"', "-0", "0", "1e2"])
KINDS = st.sampled_from(["llm.completion", "storage.snapshot", "api.request", "seats.snapshot"])
# Where each partition starts: some far behind the others, one just before the month.
BASES = st.sampled_from([-30 * MINUTE, -3 * 60 * MINUTE, -2 * 24 * 60 * MINUTE])
BEHIND = st.sampled_from(
    [0, 0, 0, 0, 5 * SECOND, 50 * SECOND, 3 * MINUTE, 9 * MINUTE, 11 * MINUTE, 30 * MINUTE]
)


@dataclass(frozen=True)
class Spec:
    """One message of a partition; ``copy`` repeats an earlier message (any partition's)."""

    tenant: str
    kind: str
    step_ms: int
    behind_ms: int
    old: bool
    value: str
    group: str
    copy: int | None


SPECS = st.builds(
    Spec,
    st.sampled_from(TENANTS),
    KINDS,
    # Round steps: events at the same time (LATEST's tie rule) and on bucket and window edges.
    st.sampled_from([0, 0, 0, SECOND, 10 * SECOND, 50 * SECOND, MINUTE, 2 * MINUTE, 1_234]),
    BEHIND,
    st.sampled_from([False] * 15 + [True]),
    NUMBERS,
    GROUP_VALUES,
    st.one_of(st.none(), st.none(), st.none(), st.integers(0, 200)),
)
PARTITION = st.tuples(BASES, st.lists(SPECS, max_size=25))
CONFIGS = st.builds(
    lambda grace, settlement, idle: WindowConfig(MINUTE, grace, max(grace, settlement), idle),
    st.sampled_from([0, 10 * SECOND, MINUTE]),
    st.sampled_from([0, 10 * MINUTE, 60 * MINUTE]),
    st.sampled_from([0, 5 * SECOND]),
)
STEP = st.one_of(
    st.tuples(st.just("batch"), st.integers(0, PARTITIONS - 1), st.integers(1, 8)),
    st.tuples(st.just("quiet"), st.floats(0, 90)),  # wall-clock time passes, no input
    st.tuples(st.just("restore")),  # snapshot, crash, restore
)


def iso(time_ms: int) -> str:
    stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=time_ms)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(spec: Spec, event_id: str, time_ms: int) -> bytes:
    """The CloudEvent's JSON, numbers spliced in as their exact text."""
    data: dict[str, Any] = {
        "llm.completion": {"tokens": "@V", "model": "@G", "region": "eu"},
        "storage.snapshot": {"gb": "@V"},
        "api.request": {"user_id": "@G"},
        "seats.snapshot": {"seats": "@V"},
    }[spec.kind]
    doc = {
        "specversion": "1.0",
        "id": event_id,
        "source": "gateway",
        "type": spec.kind,
        "subject": spec.tenant,
        "time": iso(time_ms),
        "data": data,
    }
    text = json.dumps(doc).replace('"@V"', spec.value).replace('"@G"', spec.group)
    return text.encode()


def build_partitions(drawn: list[tuple[int, list[Spec]]]) -> list[list[bytes]]:
    """The payloads of each partition, in partition order."""
    made: list[bytes] = []
    partitions: list[list[bytes]] = []
    for p, (base, specs) in enumerate(drawn):
        front = NOV_2026_MS + base
        payloads: list[bytes] = []
        for i, spec in enumerate(specs):
            front += spec.step_ms
            if spec.copy is not None and made:
                payloads.append(made[spec.copy % len(made)])
                continue
            time_ms = MIN_TIME_MS + spec.step_ms if spec.old else front - spec.behind_ms
            payloads.append(payload(spec, f"p{p}-{i}", time_ms))
            made.append(payloads[-1])
        partitions.append(payloads)
    return partitions


def accumulated(usage: WindowUsage) -> tuple[Any, ...]:
    """What the rating reads from a revision's accumulator besides its quantity."""
    acc = usage.accumulator
    if isinstance(acc, UniqueCountAccumulator):
        return (acc.count, frozenset(acc.values))
    if isinstance(acc, LatestAccumulator):
        return (acc.count, acc.time_ms, acc.latest)
    return (acc.count,)


class Flows:
    """One input fed to the Python and the native shards side by side, compared at each step."""

    def __init__(
        self, config: WindowConfig, horizon_ms: int, pricing: PricingCatalog = PRICING
    ) -> None:
        self.config = config
        self.pricing = pricing
        self.python = {
            str(s): ShardState(config, AGGREGATIONS, horizon_ms, "test", NAMES)
            for s in range(SHARDS)
        }
        self.native = {
            str(s): NativeShardState(config, CATALOG, horizon_ms, "test", NAMES)
            for s in range(SHARDS)
        }
        for shard in [*self.python.values(), *self.native.values()]:
            shard.resume(0.0)
        self.python_split = ShardSplitter(SHARDS)
        self.native_split = NativeSplitter(CATALOG, SHARDS)
        self.now_s = 0.0
        self.verdicts = {"fresh": 0, "late": 0, "duplicates": 0, "too_late": 0, "revisions": 0}

    def batch(self, p: int, batch: list[RawMessage]) -> None:
        parsed = PYTHON_PARSER.parse(batch, PARSE_NOW_MS)
        columns = NATIVE_PARSER.columns([m.payload for m in batch], PARSE_NOW_MS)
        assert list(memoryview(columns.index).cast("I")) == [
            batch.index(e.message) for e in parsed.events
        ]
        python_parts = self.python_split.split(parsed.events)
        native_parts = self.native_split.split(NAMES[p], batch, columns)
        assert python_parts.keys() == native_parts.keys()
        for key, part in python_parts.items():
            native_part = pickle.loads(pickle.dumps(native_parts[key]))  # crosses an exchange
            assert (native_part.partition, native_part.max_time_ms) == (
                NAMES[p],
                parsed.max_time_ms,
            )
            assert [native_part.event(r)[4] for r in range(len(native_part))] == [
                e.message.offset for e in part.events
            ]
            python, native = self.python[key], self.native[key]
            expected = python.screen(NAMES[p], part.events, part.progress_ms, RATED_AT_MS)
            got = native.screen(native_part, RATED_AT_MS)
            fresh_offsets = [native_part.event(r)[4] for r in got.fresh]
            assert fresh_offsets == [e.message.offset for e in expected.fresh]
            assert list(got.fresh_late) == expected.fresh_late
            assert got.too_late == expected.too_late
            assert (got.duplicates, got.late) == (expected.duplicates, expected.late)
            python.admit(expected.fresh)
            native.admit(native_part, got.fresh)
            self.verdicts["fresh"] += len(expected.fresh)
            self.verdicts["late"] += expected.late
            self.verdicts["duplicates"] += expected.duplicates
            self.verdicts["too_late"] += len(expected.too_late)
            self.finish(key, NAMES[p], parsed.max_time_ms)

    def finish(self, key: str, partition: tuple[str, int] | None, max_time_ms: int | None) -> None:
        python, native = self.python[key], self.native[key]
        expected = python.finish(partition, max_time_ms, self.now_s)
        got = native.finish(partition, max_time_ms, self.now_s)
        self.compare(python, native, expected, got)

    def compare(
        self,
        python: ShardState,
        native: NativeShardState,
        expected: list[WindowUsage],
        got: Revisions,
    ) -> None:
        usages = revision_usages(got, CATALOG, self.config.size_ms)
        assert usages == expected
        assert [accumulated(u) for u in usages] == [accumulated(u) for u in expected]
        if expected:
            rated = python.rate(expected, self.pricing, RATED_AT_MS)
            columns = native.rate(got, self.pricing, RATED_AT_MS)
            # Columns in, columns out: every field of every row, amounts to the last decimal.
            assert columns.windows() == rated
            if columns.amount_changes is not None:
                assert summed(columns.amount_changes) == changes_of(rated)
        assert native.watermark == python.windows.watermark
        assert native.next_wakeup(self.now_s) == python.windows.next_wakeup(self.now_s)
        self.verdicts["revisions"] += len(expected)

    def quiet(self, seconds: float) -> None:
        self.now_s += seconds
        for key in self.python:
            self.finish(key, None, None)

    def restore(self) -> None:
        self.python = {k: pickle.loads(pickle.dumps(s)) for k, s in self.python.items()}
        self.native = {k: pickle.loads(pickle.dumps(s)) for k, s in self.native.items()}
        for shard in [*self.python.values(), *self.native.values()]:
            shard.resume(self.now_s)

    def end(self) -> None:
        for key, python in self.python.items():
            native = self.native[key]
            self.compare(python, native, python.close_all(), native.close_all())
            assert native.shard.dedup_len() == len(python.dedup)


def summed(totals: list[tuple[str, str, str]]) -> dict[tuple[str, str], Decimal]:
    """The core's totals of changes in amount, by (currency, sign)."""
    return {(currency, sign): Decimal(total) for currency, sign, total in totals}


def changes_of(rated: list[RatedWindow]) -> dict[tuple[str, str], Decimal]:
    """The rows' changes in amount added up by (currency, "charge" or "credit")."""
    out: dict[tuple[str, str], Decimal] = {}
    for w in rated:
        change = EXACT.subtract(w.amount, w.previous_amount)
        if change:
            key = (w.currency, "charge" if change > 0 else "credit")
            # copy_abs: abs() would round to the default context's 28 digits.
            out[key] = EXACT.add(out.get(key, Decimal(0)), change.copy_abs())
    return out


def play(drawn: list[tuple[int, list[Spec]]], schedule: list[Any], flows: Flows) -> Flows:
    partitions = build_partitions(drawn)
    read = [0] * PARTITIONS

    def batch(p: int, size: int) -> None:
        payloads = partitions[p][read[p] : read[p] + size]
        messages = [RawMessage(data, *NAMES[p], read[p] + i) for i, data in enumerate(payloads)]
        read[p] += len(payloads)
        if messages:
            flows.batch(p, messages)
            flows.now_s += 0.1

    for step in schedule:
        match step:
            case ("batch", p, size):
                batch(p, size)
            case ("quiet", seconds):
                flows.quiet(seconds)
            case ("restore",):
                flows.restore()
    for p in range(PARTITIONS):
        batch(p, len(partitions[p]))
    flows.end()
    return flows


LATE_COPY = [
    (0, [Spec("acme", "llm.completion", 0, 0, False, "1.50", '"gpt"', None)]),
    (
        -3 * 60 * MINUTE,
        [
            Spec("acme", "seats.snapshot", 0, 0, False, "3", '"x"', None),
            Spec("acme", "seats.snapshot", 5 * MINUTE, 0, False, "2", '"x"', None),
        ],
    ),
    (0, [Spec("globex", "api.request", 0, 0, False, "0", "1.0", None)]),
]


@settings(max_examples=150, deadline=None)
@given(
    drawn=st.lists(PARTITION, min_size=PARTITIONS, max_size=PARTITIONS),
    schedule=st.lists(STEP, max_size=40),
    config=CONFIGS,
    horizon_ms=st.sampled_from([0, 30 * SECOND, 10 * MINUTE, 2 * 60 * MINUTE]),
)
@example(
    drawn=LATE_COPY,
    schedule=[("batch", 0, 1), ("quiet", 80.0), ("batch", 1, 2), ("restore",), ("batch", 2, 1)],
    config=WindowConfig(MINUTE, 10 * SECOND, 10 * MINUTE, 5 * SECOND),
    horizon_ms=10 * MINUTE,
)
# LATEST's tie rule: two values at the same time, the smaller one first.
@example(
    drawn=[
        (
            0,
            [
                Spec("acme", "seats.snapshot", 0, 0, False, "3.5", '"x"', None),
                Spec("acme", "seats.snapshot", 0, 0, False, "5", '"x"', None),
            ],
        ),
        (0, []),
        (0, []),
    ],
    schedule=[],
    config=WindowConfig(MINUTE, 0, 0, 0),
    horizon_ms=0,
)
def test_native_shard_decides_and_emits_as_the_python_shard(
    drawn: list[tuple[int, list[Spec]]],
    schedule: list[Any],
    config: WindowConfig,
    horizon_ms: int,
) -> None:
    play(drawn, schedule, Flows(config, horizon_ms))


def test_the_schedules_reach_every_verdict() -> None:
    """The generator is not vacuous: duplicates, late, too-late events and adjustments occur."""
    seen = dict.fromkeys(["fresh", "late", "duplicates", "too_late", "revisions"], 0)

    @settings(max_examples=40, deadline=None, database=None)
    @given(
        drawn=st.lists(PARTITION, min_size=PARTITIONS, max_size=PARTITIONS),
        schedule=st.lists(STEP, max_size=40),
    )
    def run(drawn: list[tuple[int, list[Spec]]], schedule: list[Any]) -> None:
        flows = play(drawn, schedule, Flows(WindowConfig(MINUTE, 0, 10 * MINUTE, 0), MINUTE))
        for name, count in flows.verdicts.items():
            seen[name] += count

    run()
    assert all(seen.values()), seen
