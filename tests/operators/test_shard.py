"""One shard's flow: screen (dedup + lateness) -> admit -> finish, and what it counts."""

from __future__ import annotations

import itertools
import pickle
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.meters import Aggregation
from config.pricing import PricingCatalog
from operators.model import Event, Reason, WindowKind, WindowUsage
from operators.shard import IncompatibleStateError, Screened, SeededPeriods, ShardState
from operators.windowing import PartitionKey, WindowConfig
from tests.operators.conftest import make_event

SIZE = 1_000
GRACE = 200
SETTLEMENT = 3_000
CONFIG = WindowConfig(
    size_ms=SIZE, grace_ms=GRACE, settlement_ms=SETTLEMENT, idle_timeout_ms=10_000
)
NOW_MS = 1_780_272_000_000
P0 = ("usage", 0)


def new_shard() -> ShardState:
    # Dedup horizon = settlement, as the settings default it.
    return ShardState(
        CONFIG, {"tokens": Aggregation.SUM}, dedup_horizon_ms=SETTLEMENT, instance="test"
    )


def screen(shard: ShardState, events: list[Event], partition: PartitionKey = P0) -> Screened:
    """Screen ``events`` as one whole batch of ``partition``."""
    progress = list(itertools.accumulate((e.time_ms for e in events), max))
    return shard.screen(partition, events, progress, NOW_MS)


def run_batch(
    shard: ShardState, events: list[Event], now_s: float = 0.0
) -> tuple[list[Event], int, int]:
    """Screen, admit and finish one batch; return (fresh, duplicates, too_late count)."""
    screened = screen(shard, events)
    shard.admit(screened.fresh)
    max_time = max((e.time_ms for e in events), default=None)
    shard.finish(P0, max_time, now_s)
    return screened.fresh, screened.duplicates, len(screened.too_late)


def test_fresh_events_are_admitted_and_emitted_when_the_window_closes() -> None:
    shard = new_shard()
    events = [make_event(1_100, Decimal(2)), make_event(1_500, Decimal(3))]

    screened = screen(shard, events)
    shard.admit(screened.fresh)
    assert shard.finish(P0, 1_500, 0.0) == []
    rows = shard.finish(P0, 2_000 + GRACE, 1.0)

    assert screened.fresh == events
    assert (screened.duplicates, screened.late, screened.too_late) == (0, 0, [])
    assert [(r.window_start_ms, r.quantity, r.revision, r.kind) for r in rows] == [
        (1_000, Decimal(5), 2, WindowKind.WINDOW)
    ]


def test_duplicates_within_a_batch_are_counted_and_dropped() -> None:
    shard = new_shard()
    first = make_event(1_100, Decimal(2), event_id="evt-1", offset=0)
    copy = make_event(1_100, Decimal(2), event_id="evt-1", offset=1)
    other = make_event(1_200, Decimal(3), event_id="evt-2", offset=2)

    screened = screen(shard, [first, copy, other])

    assert screened.fresh == [first, other]
    assert screened.duplicates == 1


def test_duplicates_across_batches_are_counted_once_in_the_window() -> None:
    shard = new_shard()
    event = make_event(1_100, Decimal(2), event_id="evt-1")
    run_batch(shard, [event])

    screened = screen(shard, [make_event(1_100, Decimal(2), event_id="evt-1", offset=9)])
    shard.admit(screened.fresh)

    assert screened.fresh == []
    assert screened.duplicates == 1
    assert [r.quantity for r in shard.close_all()] == [Decimal(2)]


def test_idempotency_key_is_source_and_id() -> None:
    shard = new_shard()
    a = make_event(1_100, event_id="evt-1")
    b = a._replace(source="other-gateway")

    assert screen(shard, [a, b]).duplicates == 0


def test_late_events_are_fresh_counted_and_adjust_the_window() -> None:
    shard = new_shard()
    run_batch(shard, [make_event(1_100, Decimal(2), event_id="a")])
    shard.finish(P0, 2_000 + GRACE, 1.0)

    screened = screen(shard, [make_event(1_200, Decimal(5), event_id="b")])
    shard.admit(screened.fresh)
    rows = shard.finish(P0, None, 2.0)

    assert screened.late == 1
    assert len(screened.fresh) == 1
    assert [(r.quantity, r.previous_quantity, r.revision, r.kind) for r in rows] == [
        (Decimal(7), Decimal(2), 2, WindowKind.ADJUSTMENT)
    ]


def test_too_late_events_become_rejections_that_keep_the_original_message() -> None:
    shard = new_shard()
    shard.finish(P0, 2_000 + SETTLEMENT, 0.0)
    event = make_event(1_999, Decimal(4), event_id="evt-old", offset=42, partition=3)

    screened = screen(shard, [event])

    assert screened.fresh == []
    assert len(screened.too_late) == 1
    rejection = screened.too_late[0]
    assert rejection.reason is Reason.TOO_LATE
    assert rejection.payload == event.message.payload
    assert (rejection.origin, rejection.partition, rejection.offset) == ("usage", 3, 42)
    assert (rejection.event_id, rejection.event_source, rejection.tenant) == (
        "evt-old",
        "gateway",
        "acme",
    )
    assert rejection.rejected_at_ms == NOW_MS
    assert "1999" in rejection.detail


def test_one_ms_before_the_settlement_horizon_is_still_late_not_too_late() -> None:
    shard = new_shard()
    shard.finish(P0, 2_000 + SETTLEMENT - 1, 0.0)

    screened = screen(shard, [make_event(1_999)])

    assert (len(screened.fresh), screened.late, screened.too_late) == (1, 1, [])


def test_a_copy_after_the_key_expired_is_too_late_not_counted_twice() -> None:
    shard = new_shard()
    run_batch(shard, [make_event(1_100, Decimal(2), event_id="evt-1")])
    shard.finish(P0, 2_000 + SETTLEMENT, 1.0)
    assert "4:acme7:gatewayevt-1" not in shard.dedup

    screened = screen(shard, [make_event(1_100, Decimal(2), event_id="evt-1")])

    assert screened.fresh == []
    assert len(screened.too_late) == 1


def test_finish_without_a_partition_only_advances() -> None:
    shard = new_shard()
    run_batch(shard, [make_event(1_100)], now_s=0.0)

    rows = shard.finish(None, None, 10.0)  # a timer wake-up, every partition quiet

    assert [r.window_start_ms for r in rows] == [1_000]


def test_resume_after_restore_keeps_downtime_out_of_the_watermark() -> None:
    shard = new_shard()
    run_batch(shard, [make_event(1_100)], now_s=0.0)
    restored: ShardState = pickle.loads(pickle.dumps(shard))

    restored.resume(50_000.0)

    assert restored.finish(None, None, 50_000.5) == []
    assert "4:acme7:gatewayevt-1100-0" in restored.dedup


# A true copy repeats id and time, so the time is a function of the id.
EVENT_IDS = st.lists(st.integers(min_value=0, max_value=40), max_size=15)


@given(batches=st.lists(EVENT_IDS, max_size=8))
def test_every_event_is_fresh_duplicate_or_too_late_and_counted_once(
    batches: list[list[int]],
) -> None:
    shard = new_shard()
    counted: set[str] = set()
    rows = []
    for now_s, batch in enumerate(batches):
        events = [
            make_event(number * 250, Decimal(1), event_id=f"evt-{number}", offset=i)
            for i, number in enumerate(batch)
        ]
        screened = screen(shard, events)

        assert len(screened.fresh) + screened.duplicates + len(screened.too_late) == len(events)
        assert screened.late <= len(screened.fresh)
        fresh_ids = [e.id for e in screened.fresh]
        # Never counted twice: a key admitted before is now a duplicate or too late.
        assert not counted.intersection(fresh_ids)
        assert len(set(fresh_ids)) == len(fresh_ids)
        counted.update(fresh_ids)
        shard.admit(screened.fresh)
        rows += shard.finish(P0, max((e.time_ms for e in events), default=None), float(now_s))
    rows += shard.close_all()

    final: dict[int, tuple[int, Decimal]] = {}
    for row in rows:
        final[row.window_start_ms] = max(
            final.get(row.window_start_ms, (0, Decimal(0))), (row.revision, row.quantity)
        )
    assert sum((quantity for _, quantity in final.values()), Decimal(0)) == len(counted)


def test_the_same_source_and_id_under_two_tenants_are_two_events() -> None:
    shard = new_shard()
    events = [
        make_event(1_100, Decimal(1), event_id="evt-1", tenant="acme"),
        make_event(1_100, Decimal(1), event_id="evt-1", tenant="globex", offset=1),
    ]

    screened = screen(shard, events)

    assert (len(screened.fresh), screened.duplicates) == (2, 0)


def test_a_too_late_copy_of_a_counted_event_is_a_duplicate() -> None:
    # Keys outlive the settlement horizon here (with the default, equal horizons,
    # a key expires just as its window becomes too late).
    shard = ShardState(
        CONFIG, {"tokens": Aggregation.SUM}, dedup_horizon_ms=2 * SETTLEMENT, instance="test"
    )
    run_batch(shard, [make_event(1_100, Decimal(2), event_id="evt-1")])
    shard.finish(P0, 2_000 + SETTLEMENT, 1.0)  # the window is now settled for good

    screened = screen(shard, [make_event(1_100, Decimal(2), event_id="evt-1", offset=9)])

    assert (screened.duplicates, screened.too_late) == (1, [])


def test_restored_state_takes_the_current_settings() -> None:
    shard = new_shard()
    longer = WindowConfig(
        size_ms=CONFIG.size_ms,
        grace_ms=CONFIG.grace_ms,
        settlement_ms=CONFIG.settlement_ms * 10,
        idle_timeout_ms=CONFIG.idle_timeout_ms,
    )

    shard.reconfigure(longer, {"tokens": Aggregation.SUM, "calls": Aggregation.COUNT}, 99)

    assert shard.windows.config == longer
    assert shard.windows.aggregations["calls"] is Aggregation.COUNT
    assert shard.dedup.horizon_ms == 99


def test_restored_state_refuses_a_new_window_length_or_aggregation() -> None:
    shard = new_shard()
    shorter = WindowConfig(
        size_ms=CONFIG.size_ms // 2,
        grace_ms=CONFIG.grace_ms,
        settlement_ms=CONFIG.settlement_ms,
        idle_timeout_ms=CONFIG.idle_timeout_ms,
    )
    with pytest.raises(IncompatibleStateError, match=r"window\.size"):
        shard.reconfigure(shorter, {"tokens": Aggregation.SUM}, SETTLEMENT)
    with pytest.raises(IncompatibleStateError, match="'tokens' is now MAX"):
        shard.reconfigure(CONFIG, {"tokens": Aggregation.MAX}, SETTLEMENT)


def test_restored_state_refuses_another_shard_count() -> None:
    shard = ShardState(CONFIG, {"tokens": Aggregation.SUM}, SETTLEMENT, "test", shards=8)
    shard.reconfigure(CONFIG, {"tokens": Aggregation.SUM}, SETTLEMENT, shards=8)

    with pytest.raises(IncompatibleStateError, match=r"flow\.shards is 4 .* over 8 shards"):
        shard.reconfigure(CONFIG, {"tokens": Aggregation.SUM}, SETTLEMENT, shards=4)


def test_restored_state_refuses_a_catalog_without_a_plan_for_its_tenants(
    pricing_catalog: PricingCatalog,
) -> None:
    shard = new_shard()
    run_batch(shard, [make_event(1_100, Decimal(2), tenant="acme")])
    shard.reconfigure(CONFIG, {"tokens": Aggregation.SUM}, SETTLEMENT, pricing=pricing_catalog)

    without_acme = PricingCatalog(plans=pricing_catalog.plans, subscriptions={})
    with pytest.raises(IncompatibleStateError, match="'acme' have usage in the recovery state"):
        shard.reconfigure(CONFIG, {"tokens": Aggregation.SUM}, SETTLEMENT, pricing=without_acme)


def with_grace(grace_ms: int) -> WindowConfig:
    return WindowConfig(SIZE, grace_ms, SETTLEMENT, CONFIG.idle_timeout_ms)


@pytest.mark.parametrize(
    ("old_grace", "new_grace", "kinds"),
    [
        # Restored open, now past its (shorter) grace: one window with both events.
        (500, 0, [(Decimal(2), WindowKind.WINDOW), (Decimal(5), WindowKind.WINDOW)]),
        # Restored settled, now within its (longer) grace: an adjustment, nothing lost.
        (0, 500, [(Decimal(2), WindowKind.WINDOW), (Decimal(5), WindowKind.ADJUSTMENT)]),
    ],
)
def test_an_event_after_a_restart_with_another_grace_lands_in_its_window(
    old_grace: int, new_grace: int, kinds: list[tuple[Decimal, WindowKind]]
) -> None:
    shard = ShardState(with_grace(old_grace), {"tokens": Aggregation.SUM}, SETTLEMENT, "test")
    run_batch(shard, [make_event(1_100, Decimal(2), event_id="a", groups=(("m", "x"),))])
    early = shard.finish(P0, 2_300, 1.0)
    restored: ShardState = pickle.loads(pickle.dumps(shard))
    restored.reconfigure(with_grace(new_grace), {"tokens": Aggregation.SUM}, SETTLEMENT)

    # Another series of the same window, so nothing can hide a lost or misplaced event.
    rows = early + run_batch_rows(
        restored, [make_event(1_200, Decimal(5), event_id="b", groups=(("m", "y"),))]
    )

    assert sorted((r.quantity, r.kind) for r in rows) == sorted(kinds)
    assert sum(r.quantity - r.previous_quantity for r in rows) == Decimal(7)


def run_batch_rows(shard: ShardState, events: list[Event]) -> list[WindowUsage]:
    screened = screen(shard, events)
    shard.admit(screened.fresh)
    return shard.finish(P0, None, 2.0)


def test_windows_of_a_meter_removed_before_a_restart_still_close_and_rate(
    pricing_catalog: PricingCatalog,
) -> None:
    shard = ShardState(CONFIG, {"tokens": Aggregation.SUM, "calls": Aggregation.COUNT}, 0, "t")
    run_batch(shard, [make_event(1_100, None, meter="calls")])
    restored: ShardState = pickle.loads(pickle.dumps(shard))
    restored.reconfigure(CONFIG, {"tokens": Aggregation.SUM}, SETTLEMENT)

    rated = restored.rate(restored.close_all(), pricing_catalog, NOW_MS)

    assert [(r.meter, r.quantity) for r in rated] == [("calls", Decimal(1))]


def test_seeded_periods_are_forgotten_once_ended_whatever_order_they_came_in() -> None:
    seeded = SeededPeriods()
    seeded[("acme", "calls", 0)] = 2_000
    seeded.expire(1_000)  # nothing ended
    seeded[("globex", "calls", 0)] = 1_500  # ends earlier than every kept one
    seeded.expire(1_500)
    assert dict(seeded) == {("acme", "calls", 0): 2_000}
    # A copy (a restored snapshot) looks once, then knows.
    restored = pickle.loads(pickle.dumps(SeededPeriods({("a", "m", 0): 10, ("b", "m", 0): 30})))
    restored.expire(20)
    assert dict(restored) == {("b", "m", 0): 30}
    restored.expire(30)
    assert dict(restored) == {}
