"""No valid batch, watermark jump or publish timing can make a shard raise or miscount.

``ShardState`` is driven the way ``dataflows.metering_step`` drives it
(screen -> admit -> finish -> rate, live changes published at random points,
snapshots restored at random points) with batches that mix current events,
events from 2000-01-01, far-future events, month and price-version
boundaries, duplicates and random input partitions. Whatever the order, the
windows and the live counters must add up to the accepted events, and every
quota level reached must be announced exactly once.
"""

from __future__ import annotations

import itertools
import pickle
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from config.meters import Aggregation
from config.pricing import (
    MeterPrice,
    Plan,
    PlanVersion,
    PricingCatalog,
    Quota,
    Subscription,
    UnitPrice,
)
from operators.live_usage import LiveCounter, QuotaEvent
from operators.model import Event, Measure, RatedWindow, WindowUsage
from operators.parse import MIN_TIME_MS
from operators.periods import billing_segment
from operators.shard import ShardState
from operators.windowing import WindowConfig
from tests.operators.conftest import JAN_2026_MS, NOV_2026_MS, raw_message

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
CONFIG = WindowConfig(
    size_ms=MINUTE, grace_ms=10_000, settlement_ms=10 * MINUTE, idle_timeout_ms=5_000
)
AGGREGATIONS = {"tokens": Aggregation.SUM, "calls": Aggregation.COUNT}
RATED_AT_MS = NOV_2026_MS
QUOTA = Quota(soft_limit=Decimal(500), hard_limit=Decimal(1000), thresholds=(Decimal(50),))
# (kind, percent, level) of every quota level, as announced.
LEVELS = (
    ("threshold", Decimal(50), Decimal(250)),
    ("soft_limit", None, Decimal(500)),
    ("hard_limit", None, Decimal(1000)),
)
PRICING = PricingCatalog(
    plans={
        "starter": Plan(
            id="starter",
            currency="USD",
            versions=(
                PlanVersion(
                    version="2026-01",
                    effective_from_ms=JAN_2026_MS,
                    prices={
                        "tokens": MeterPrice(UnitPrice(Decimal("0.002"))),
                        "calls": MeterPrice(UnitPrice(Decimal("0.1"))),
                    },
                ),
                PlanVersion(
                    version="2026-11",
                    effective_from_ms=NOV_2026_MS,
                    prices={"tokens": MeterPrice(UnitPrice(Decimal("0.0015")))},
                    quotas={"tokens": QUOTA},
                ),
            ),
        )
    },
    # acme's periods start on the 1st (UTC): 2026-11-01 is a period and a price boundary;
    # globex's on the 15th in Berlin, so one of its periods spans both price versions.
    subscriptions={
        "acme": Subscription("starter"),
        "globex": Subscription("starter", anchor_day=15, timezone="Europe/Berlin"),
    },
)
TENANTS = ("acme", "globex")
# The input partitions, named up front as every source of ours does.
PARTITIONS = [("usage", p) for p in range(3)]

# Event times: around the month boundary, on the oldest accepted day, far ahead.
TIMES = st.one_of(
    st.integers(-2 * HOUR, 2 * HOUR).map(lambda d: NOV_2026_MS + d),
    st.integers(0, 3 * MINUTE).map(lambda d: MIN_TIME_MS + d),
    st.integers(DAY, 60 * DAY).map(lambda d: NOV_2026_MS + d),
)
TOKENS = st.integers(0, 300_000).map(lambda n: Decimal(n).scaleb(-3))


@dataclass(frozen=True)
class Spec:
    """One event's content; a batch names specs by index, so repeats are true copies."""

    tenant: str
    time_ms: int
    tokens: Decimal


Step = tuple[Any, ...]
SPECS = st.builds(Spec, st.sampled_from(TENANTS), TIMES, TOKENS)
STEPS = st.one_of(
    # A batch from one input partition: spec indices, then how long it took (s).
    st.tuples(
        st.just("batch"),
        st.integers(0, 2),
        st.lists(st.integers(0, 39), max_size=12),
        st.floats(0, 3),
    ),
    st.tuples(st.just("quiet"), st.floats(0, 30)),  # a timer wake-up after quiet time
    st.tuples(st.just("publish")),
    st.tuples(st.just("restore")),  # snapshot, crash, restore
)


def event(index: int, spec: Spec, offset: int, partition: int) -> Event:
    return Event(
        tenant=spec.tenant,
        source="gateway",
        id=f"evt-{index}",
        type="llm.completion",
        time_ms=spec.time_ms,
        measures=(
            Measure("calls", None, ()),
            Measure("tokens", spec.tokens, (("model", f"m{index % 2}"),)),
        ),
        message=raw_message(b"{}", offset=offset, partition=partition),
    )


class Driver:
    """Plays MeteringLogic's part: what it emits, and what was accepted."""

    def __init__(self) -> None:
        self.shard = ShardState(CONFIG, AGGREGATIONS, CONFIG.settlement_ms, "test", PARTITIONS)
        self.shard.resume(0.0)
        self.now_s = 0.0
        self.offset = 0
        self.accepted: list[Event] = []
        self.rows: list[RatedWindow] = []
        self.counters: list[LiveCounter] = []
        self.quota_events: list[QuotaEvent] = []

    def batch(self, partition: int, events: list[Event], took_s: float) -> None:
        shard = self.shard
        progress = list(itertools.accumulate((e.time_ms for e in events), max))
        screened = shard.screen(("usage", partition), events, progress, RATED_AT_MS)
        assert len(screened.fresh) + screened.duplicates + len(screened.too_late) == len(events)
        shard.admit(screened.fresh, PRICING)
        self.accepted += screened.fresh
        self.now_s += took_s
        max_time = progress[-1] if progress else None
        self.rate(shard.finish(("usage", partition), max_time, self.now_s))

    def quiet(self, seconds: float) -> None:
        self.now_s += seconds
        self.rate(self.shard.finish(None, None, self.now_s))

    def rate(self, usages: list[WindowUsage]) -> None:
        if usages:
            self.rows += self.shard.rate(usages, PRICING, RATED_AT_MS)

    def publish(self) -> None:
        counters, quota_events = self.shard.live_changes(PRICING, RATED_AT_MS)
        self.counters += counters
        self.quota_events += quota_events

    def restore(self) -> None:
        self.shard = pickle.loads(pickle.dumps(self.shard))
        self.shard.resume(self.now_s)

    def end(self) -> None:
        """End of input, as on_eof: publish, then close every window."""
        self.publish()
        self.rate(self.shard.close_all())


def play(specs: list[Spec], steps: list[Step]) -> Driver:
    driver = Driver()
    for step in steps:
        match step:
            case ("batch", partition, indices, took_s):
                events = []
                for index in indices:
                    if index < len(specs):
                        events.append(event(index, specs[index], driver.offset, partition))
                        driver.offset += 1
                driver.batch(partition, events, took_s)
            case ("quiet", seconds):
                driver.quiet(seconds)
            case ("publish",):
                driver.publish()
            case ("restore",):
                driver.restore()
    driver.end()
    return driver


def check(driver: Driver) -> None:
    # Never counted twice.
    keys = [e.idempotency_key for e in driver.accepted]
    assert len(keys) == len(set(keys))

    # The independent answer: accepted events summed per period.
    usage: dict[tuple[str, str, int], Decimal] = defaultdict(Decimal)
    quota_periods: set[tuple[str, int]] = set()
    for e in driver.accepted:
        segment = billing_segment(PRICING, e.tenant, e.time_ms - e.time_ms % CONFIG.size_ms)
        assert segment is not None
        start = segment.period_start_ms
        usage[(e.tenant, "calls", start)] += 1
        usage[(e.tenant, "tokens", start)] += e.measures[1].value  # type: ignore[operator]
        if segment.version is not None and "tokens" in segment.version.quotas:
            quota_periods.add((e.tenant, start))

    # Windows: the last revision of each adds up to the accepted events, per period.
    last: dict[tuple[str, str, tuple[tuple[str, str], ...], int], RatedWindow] = {}
    for row in driver.rows:
        key = (row.tenant, row.meter, row.groups, row.window_start_ms)
        if key not in last or row.revision > last[key].revision:
            last[key] = row
    windows: dict[tuple[str, str, int], Decimal] = defaultdict(Decimal)
    amounts: dict[tuple[str, str, int], Decimal] = defaultdict(Decimal)
    for row in last.values():
        segment = billing_segment(PRICING, row.tenant, row.window_start_ms)
        assert segment is not None
        windows[(row.tenant, row.meter, segment.period_start_ms)] += row.quantity
        amounts[(row.tenant, row.meter, segment.period_start_ms)] += row.amount
    assert windows == usage

    # Live counters: every period published, its last value the period's usage and cost.
    live = {(c.tenant, c.meter, c.period_start_ms): c for c in driver.counters}
    assert {key: c.quantity for key, c in live.items()} == usage
    assert {key: c.amount for key, c in live.items()} == amounts

    # Quota crossings: each level reached announced once, none that was not reached.
    ids = [q.event_id for q in driver.quota_events]
    assert len(ids) == len(set(ids))
    expected = {
        (tenant, start, kind, percent)
        for (tenant, meter, start), quantity in usage.items()
        if meter == "tokens" and (tenant, start) in quota_periods
        for kind, percent, level in LEVELS
        if quantity >= level
    }
    announced = {(q.tenant, q.period_start_ms, q.kind, q.percent) for q in driver.quota_events}
    assert announced == expected


@settings(max_examples=300, deadline=None)
@given(specs=st.lists(SPECS, min_size=1, max_size=40), steps=st.lists(STEPS, max_size=30))
# Issue 11 (b): one event from 2000-01-01 in a batch with a current one, on a fresh flow.
@example(
    specs=[Spec("acme", MIN_TIME_MS, Decimal(7)), Spec("acme", NOV_2026_MS, Decimal(5))],
    steps=[("batch", 0, [0, 1], 0.1)],
)
# Issue 11 (a): a backlog crosses the month boundary; events for the old month are
# admitted just before it settles, and published only after the watermark passed it.
@example(
    specs=[
        Spec("acme", NOV_2026_MS - MINUTE, Decimal(1)),
        Spec("acme", NOV_2026_MS + 9 * MINUTE, Decimal(2)),
        Spec("acme", NOV_2026_MS - 1, Decimal(3)),
        Spec("acme", NOV_2026_MS + 2 * HOUR, Decimal(4)),
    ],
    steps=[
        ("batch", 0, [0, 1], 0.1),
        ("publish",),
        ("batch", 0, [2], 0.1),
        ("batch", 0, [3], 0.1),
    ],
)
def test_no_batch_jump_or_publish_timing_raises_or_miscounts(
    specs: list[Spec],
    steps: list[Step],
) -> None:
    check(play(specs, steps))
