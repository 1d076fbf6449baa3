"""Lateness is a function of the input: no schedule, batch split or wall clock changes it.

The same per-partition event sequences (skewed partitions, old events mixed
in, true copies) are fed to the shards the way the flow feeds them
(``ShardSplitter`` per batch, every shard hears of every batch), under two
independently drawn schedules: random batch cuts, random interleavings of
the partitions, random wall-clock quiet time (idle advance) and random
snapshot-and-restore. Every event's verdict (on time, late, too late,
duplicate) must equal the one computed from the definition: its window
against the latest event time of its own partition up to that event. The
windows' final values must be the same in both runs, and equal to the
accepted events.
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from config.meters import Aggregation
from operators.model import Event, Measure, WindowUsage
from operators.shard import ShardState
from operators.sharding import ShardSplitter
from operators.windowing import WindowConfig
from tests.operators.conftest import NOV_2026_MS, raw_message

SECOND = 1_000
MINUTE = 60 * SECOND
CONFIG = WindowConfig(
    size_ms=MINUTE, grace_ms=10 * SECOND, settlement_ms=10 * MINUTE, idle_timeout_ms=5 * SECOND
)
PARTITIONS = 3
SHARDS = 3
NAMES = [("usage", p) for p in range(PARTITIONS)]
TENANTS = ("acme", "globex", "umbrella", "initech")
NOW_MS = NOV_2026_MS

# Where each partition starts: some far behind the others.
BASES = st.sampled_from([0, -40 * MINUTE, -3 * 60 * MINUTE])
# How far behind its partition's front an event is: mostly current, some within
# grace, some late, some too late (and some around the edges).
BEHIND = st.sampled_from(
    [0, 0, 0, 0, 5 * SECOND, 50 * SECOND, 3 * MINUTE, 9 * MINUTE, 11 * MINUTE, 30 * MINUTE]
)


@dataclass(frozen=True)
class Spec:
    """One message of a partition; ``copy`` repeats the partition's previous event."""

    tenant: str
    step_ms: int
    behind_ms: int
    value: int
    copy: bool


SPECS = st.builds(
    Spec,
    st.sampled_from(TENANTS),
    st.integers(0, 2 * MINUTE),
    BEHIND,
    st.integers(1, 1_000),
    st.sampled_from([False] * 5 + [True]),
)
PARTITION = st.tuples(BASES, st.lists(SPECS, max_size=25))

STEP = st.one_of(
    st.tuples(st.just("batch"), st.integers(0, PARTITIONS - 1), st.integers(1, 8)),
    st.tuples(st.just("quiet"), st.floats(0, 30)),  # wall-clock time passes, no input
    st.tuples(st.just("restore")),  # snapshot, crash, restore
)
SCHEDULE = st.lists(STEP, max_size=40)

Position = tuple[int, int]  # partition, index in it


def build_partitions(drawn: list[tuple[int, list[Spec]]]) -> list[list[Event]]:
    """The events of each partition, in partition order."""
    partitions: list[list[Event]] = []
    for p, (base, specs) in enumerate(drawn):
        front = NOW_MS + base
        events: list[Event] = []
        for i, spec in enumerate(specs):
            message = raw_message(b"{}", offset=i, partition=p)
            if spec.copy and events:
                events.append(events[-1]._replace(message=message))
                continue
            front += spec.step_ms
            events.append(
                Event(
                    tenant=spec.tenant,
                    source="gateway",
                    id=f"p{p}-{i}",
                    type="llm.completion",
                    time_ms=front - spec.behind_ms,
                    measures=(Measure("tokens", Decimal(spec.value), ()),),
                    message=message,
                )
            )
        partitions.append(events)
    return partitions


def expected_verdicts(partitions: list[list[Event]]) -> dict[Position, set[str]]:
    """Each event's verdict from the definition (a set: either is right for some copies)."""
    verdicts: dict[Position, set[str]] = {}
    for p, events in enumerate(partitions):
        latest = None
        counted: set[str] = set()
        for i, event in enumerate(events):
            latest = event.time_ms if latest is None else max(latest, event.time_ms)
            end = event.time_ms - event.time_ms % CONFIG.size_ms + CONFIG.size_ms
            if end + CONFIG.settlement_ms <= latest:
                # A too-late copy of a counted event is a duplicate while its key is remembered.
                verdicts[(p, i)] = (
                    {"too_late", "duplicate"} if event.id in counted else {"too_late"}
                )
            elif event.id in counted:
                verdicts[(p, i)] = {"duplicate"}
            else:
                counted.add(event.id)
                verdicts[(p, i)] = {"on_time" if end + CONFIG.grace_ms > latest else "late"}
    return verdicts


@dataclass
class Run:
    """The shards of one flow, fed one schedule; what they decided and emitted."""

    verdicts: dict[Position, str]
    rows: list[WindowUsage]


def new_shards() -> dict[str, ShardState]:
    return {
        str(s): ShardState(CONFIG, {"tokens": Aggregation.SUM}, CONFIG.settlement_ms, "test", NAMES)
        for s in range(SHARDS)
    }


def play(partitions: list[list[Event]], schedule: list[Any]) -> Run:
    shards = new_shards()
    for shard in shards.values():
        shard.resume(0.0)
    splitter = ShardSplitter(SHARDS)
    now_s = 0.0
    read = [0] * PARTITIONS
    run = Run({}, [])

    def batch(p: int, size: int) -> None:
        events = partitions[p][read[p] : read[p] + size]
        read[p] += len(events)
        if not events:
            return
        latest = max(e.time_ms for e in events)
        for key, part in splitter.split(events).items():
            shard = shards[key]
            screened = shard.screen(NAMES[p], part.events, part.progress_ms, NOW_MS)
            shard.admit(screened.fresh)
            for event, is_late in zip(screened.fresh, screened.fresh_late, strict=True):
                run.verdicts[(p, event.message.offset)] = "late" if is_late else "on_time"
            for rejection in screened.too_late:
                run.verdicts[(p, rejection.offset)] = "too_late"
            run.rows += shard.finish(NAMES[p], latest, now_s)
        for event in events:
            run.verdicts.setdefault((p, event.message.offset), "duplicate")

    for step in schedule:
        match step:
            case ("batch", p, size):
                batch(p, size)
                now_s += 0.1
            case ("quiet", seconds):
                now_s += seconds
                for shard in shards.values():
                    run.rows += shard.finish(None, None, now_s)
            case ("restore",):
                shards = {k: pickle.loads(pickle.dumps(s)) for k, s in shards.items()}
                for shard in shards.values():
                    shard.resume(now_s)
    for p in range(PARTITIONS):
        batch(p, len(partitions[p]))
    for shard in shards.values():
        run.rows += shard.close_all()
    return run


def final_windows(rows: list[WindowUsage]) -> dict[tuple[str, int], Decimal]:
    """Each window's value: its highest revision."""
    last: dict[tuple[str, int], WindowUsage] = {}
    for row in rows:
        key = (row.tenant, row.window_start_ms)
        if key not in last or row.revision > last[key].revision:
            last[key] = row
    return {key: row.quantity for key, row in last.items()}


@settings(max_examples=200, deadline=None)
@given(
    drawn=st.lists(PARTITION, min_size=PARTITIONS, max_size=PARTITIONS),
    first=SCHEDULE,
    second=SCHEDULE,
)
def test_lateness_and_windows_do_not_depend_on_schedule_batches_or_wall_clock(
    drawn: list[tuple[int, list[Spec]]], first: list[Any], second: list[Any]
) -> None:
    partitions = build_partitions(drawn)
    expected = expected_verdicts(partitions)

    runs = [play(partitions, first), play(partitions, second)]

    for run in runs:
        assert run.verdicts.keys() == expected.keys()
        wrong = {pos: v for pos, v in run.verdicts.items() if v not in expected[pos]}
        assert wrong == {}
    # Where the definition allows either verdict, both runs must still agree on totals.
    assert final_windows(runs[0].rows) == final_windows(runs[1].rows)
    accepted: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for (p, i), verdict in runs[0].verdicts.items():
        if verdict in ("on_time", "late"):
            event = partitions[p][i]
            start = event.time_ms - event.time_ms % CONFIG.size_ms
            accepted[(event.tenant, start)] += event.measures[0].value  # type: ignore[operator]
    assert final_windows(runs[0].rows) == accepted
