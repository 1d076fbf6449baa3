"""Event-time tumbling windows: boundaries, watermark, lateness, adjustments, idle close.

Wall-clock time is only ever passed in (``now_s``), so nothing here sleeps.
Geometry used throughout: 1 s windows, 200 ms grace, 3 s settlement, 10 s idle timeout.
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.meters import Aggregation
from operators.model import Event, GroupValues, Measure, WindowKind, WindowUsage
from operators.windowing import NO_WATERMARK, Lateness, WindowConfig, WindowStore
from tests.operators.conftest import aggregations, build_meter_catalog, make_event

SIZE = 1_000
GRACE = 200
SETTLEMENT = 3_000
IDLE_MS = 10_000
IDLE_S = IDLE_MS / 1000
CONFIG = WindowConfig(
    size_ms=SIZE, grace_ms=GRACE, settlement_ms=SETTLEMENT, idle_timeout_ms=IDLE_MS
)
AGGREGATIONS = aggregations(build_meter_catalog())  # tokens SUM, completions COUNT, storage_gb MAX
A = ("usage", 0)
B = ("usage", 1)


def new_store(config: WindowConfig = CONFIG) -> WindowStore:
    return WindowStore(config, AGGREGATIONS)


def tick(
    store: WindowStore, max_time_ms: int | None, now_s: float = 0.0, partition: tuple[str, int] = A
) -> list[WindowUsage]:
    """One batch from ``partition`` whose latest event is ``max_time_ms``, then advance."""
    store.observe(partition, max_time_ms, now_s)
    return store.advance(now_s)


def fold(
    store: WindowStore,
    time_ms: int,
    value: str = "1",
    *,
    meter: str = "tokens",
    tenant: str = "acme",
    groups: GroupValues = (),
) -> None:
    """Fold one single-measure event (no lateness check: callers choose the case)."""
    value_or_none = None if AGGREGATIONS[meter] is Aggregation.COUNT else Decimal(value)
    store.fold(make_event(time_ms, value_or_none, meter=meter, tenant=tenant, groups=groups))


def usage(
    start: int,
    quantity: str,
    revision: int,
    kind: WindowKind = WindowKind.WINDOW,
    previous: str = "0",
    tenant: str = "acme",
    meter: str = "tokens",
) -> WindowUsage:
    return WindowUsage(
        tenant=tenant,
        meter=meter,
        groups=(),
        window_start_ms=start,
        window_end_ms=start + SIZE,
        quantity=Decimal(quantity),
        previous_quantity=Decimal(previous),
        revision=revision,
        kind=kind,
    )


# --- geometry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time_ms", "start"),
    [
        (0, 0),
        (999, 0),
        (1_000, 1_000),
        (1_999, 1_000),
        (2_000, 2_000),
        (1_772_366_400_250, 1_772_366_400_000),
    ],
)
def test_window_start_is_epoch_aligned(time_ms: int, start: int) -> None:
    assert new_store().window_start(time_ms) == start


def test_time_at_start_belongs_to_the_window_and_time_at_end_to_the_next() -> None:
    store = new_store()
    fold(store, 1_000, "3")
    fold(store, 2_000, "5")

    rows = store.close_all()

    assert rows == [usage(1_000, "3", 1), usage(2_000, "5", 1)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size_ms": 0, "grace_ms": 0, "settlement_ms": 0, "idle_timeout_ms": 0},
        {"size_ms": 10, "grace_ms": -1, "settlement_ms": 0, "idle_timeout_ms": 0},
        {"size_ms": 10, "grace_ms": 0, "settlement_ms": 0, "idle_timeout_ms": -1},
        {"size_ms": 10, "grace_ms": 5, "settlement_ms": 4, "idle_timeout_ms": 0},
    ],
)
def test_config_rejects_impossible_geometry(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        WindowConfig(**kwargs)


# --- closing on time --------------------------------------------------------------------------


def test_window_closes_exactly_when_watermark_reaches_end_plus_grace() -> None:
    store = new_store()
    fold(store, 1_200, "2")
    fold(store, 1_999, "5")

    assert tick(store, 2_000 + GRACE - 1) == []
    assert 1_000 in store.open
    rows = tick(store, 2_000 + GRACE)

    assert rows == [usage(1_000, "7", 2)]
    assert store.open == {}
    assert store.watermark == 2_000 + GRACE


def test_watermark_never_moves_back() -> None:
    store = new_store()
    tick(store, 5_000)

    tick(store, 3_000)

    assert store.watermark == 5_000


def test_watermark_starts_unset_and_everything_is_open() -> None:
    store = new_store()

    assert store.watermark == NO_WATERMARK
    assert store.lateness(0, store.progress(A)) is Lateness.OPEN
    assert store.advance(0.0) == []


def test_each_series_gets_its_own_row() -> None:
    store = new_store()
    fold(store, 1_100, "2", tenant="acme")
    fold(store, 1_200, "3", tenant="globex")
    fold(store, 1_300, "4", tenant="acme", groups=(("model", "gpt"),))
    store.fold(
        Event(
            "acme",
            "gateway",
            "two-meters",
            "llm.completion",
            1_400,
            (Measure("tokens", Decimal(10), ()), Measure("completions", None, ())),
            make_event(1_400).message,
        )
    )

    rows = tick(store, 2_000 + GRACE)

    by_series = {(r.tenant, r.meter, r.groups): (r.quantity, r.revision) for r in rows}
    assert by_series == {
        ("acme", "tokens", ()): (Decimal(12), 2),
        ("globex", "tokens", ()): (Decimal(3), 1),
        ("acme", "tokens", (("model", "gpt"),)): (Decimal(4), 1),
        ("acme", "completions", ()): (Decimal(1), 1),
    }


def test_windows_close_in_time_order() -> None:
    store = new_store()
    for time_ms in (4_500, 1_500, 3_500, 2_500):
        fold(store, time_ms)

    rows = tick(store, 4_000 + GRACE)

    assert [r.window_start_ms for r in rows] == [1_000, 2_000, 3_000]
    assert list(store.open) == [4_000]


# --- lateness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "lateness", "next_window"),
    [
        (2_000 + GRACE - 1, Lateness.OPEN, Lateness.OPEN),
        (2_000 + GRACE, Lateness.LATE, Lateness.OPEN),
        (2_000 + SETTLEMENT - 1, Lateness.LATE, Lateness.LATE),
        (2_000 + SETTLEMENT, Lateness.TOO_LATE, Lateness.LATE),
    ],
)
def test_lateness_boundaries(progress: int, lateness: Lateness, next_window: Lateness) -> None:
    store = new_store()

    # Every time in [1000, 2000) shares the window and so the verdict; 2000 is the next window.
    assert store.lateness(1_000, progress) is lateness
    assert store.lateness(1_999, progress) is lateness
    assert store.lateness(2_000, progress) is next_window


def test_late_events_produce_cumulative_adjustments() -> None:
    store = new_store()
    fold(store, 1_100, "5")
    fold(store, 1_200, "7")
    assert tick(store, 2_000 + GRACE) == [usage(1_000, "12", 2)]

    assert store.lateness(1_500, store.progress(A)) is Lateness.LATE
    fold(store, 1_500, "3")
    assert tick(store, 2_300) == [usage(1_000, "15", 3, WindowKind.ADJUSTMENT, previous="12")]

    fold(store, 1_600, "1")
    fold(store, 1_700, "0.5")
    assert tick(store, 2_400) == [usage(1_000, "16.5", 5, WindowKind.ADJUSTMENT, previous="15")]


def test_no_adjustment_without_late_events() -> None:
    store = new_store()
    fold(store, 1_100, "5")
    tick(store, 2_000 + GRACE)

    assert tick(store, 2_500) == []


def test_late_event_for_a_window_that_never_had_data_starts_from_zero() -> None:
    store = new_store()
    tick(store, 2_000 + GRACE)
    assert store.lateness(500, store.progress(A)) is Lateness.LATE

    fold(store, 500, "4")
    rows = tick(store, 2_000 + GRACE)

    assert rows == [usage(0, "4", 1, WindowKind.ADJUSTMENT, previous="0")]


def test_late_event_for_a_new_series_of_a_closed_window_starts_from_zero() -> None:
    store = new_store()
    fold(store, 1_100, "5", tenant="acme")
    tick(store, 2_000 + GRACE)

    fold(store, 1_100, "2", tenant="globex")
    rows = tick(store, 2_000 + GRACE)

    assert rows == [usage(1_000, "2", 1, WindowKind.ADJUSTMENT, previous="0", tenant="globex")]


def test_late_count_and_max_adjustments() -> None:
    store = new_store()
    fold(store, 1_100, "9", meter="storage_gb")
    fold(store, 1_100, meter="completions")
    tick(store, 2_000 + GRACE)

    fold(store, 1_200, "4", meter="storage_gb")  # smaller: quantity unchanged, revision moves
    fold(store, 1_200, meter="completions")
    rows = tick(store, 2_000 + GRACE)

    assert sorted(rows, key=lambda r: r.meter) == [
        usage(1_000, "2", 2, WindowKind.ADJUSTMENT, previous="1", meter="completions"),
        usage(1_000, "9", 2, WindowKind.ADJUSTMENT, previous="9", meter="storage_gb"),
    ]


def test_settled_windows_are_dropped_at_the_settlement_horizon() -> None:
    store = new_store()
    fold(store, 1_100, "5")
    tick(store, 2_000 + GRACE)
    assert 1_000 in store.settled

    tick(store, 2_000 + SETTLEMENT - 1)
    assert 1_000 in store.settled

    tick(store, 2_000 + SETTLEMENT)
    assert 1_000 not in store.settled
    assert store.lateness(1_100, store.progress(A)) is Lateness.TOO_LATE


# --- per-partition watermark ------------------------------------------------------------------


def test_watermark_is_the_minimum_over_partitions() -> None:
    store = new_store()
    fold(store, 1_500)

    store.observe(A, 9_000, 0.0)
    store.observe(B, 1_100, 0.0)
    assert store.advance(0.0) == []
    assert store.watermark == 1_100
    # Lateness is the partition's own: on time from the lagging one, too late from the other.
    assert store.lateness(1_500, store.progress(B)) is Lateness.OPEN
    assert store.lateness(1_500, store.progress(A)) is Lateness.TOO_LATE

    rows = tick(store, 2_000 + GRACE, 1.0, partition=B)
    assert rows == [usage(1_000, "1", 1)]
    assert store.watermark == 2_000 + GRACE


def test_batch_without_accepted_events_does_not_move_its_partition() -> None:
    store = new_store()
    tick(store, 5_000, 0.0, partition=A)

    tick(store, None, 1.0, partition=A)

    assert store.partition_max[A] == 5_000
    assert store.watermark == 5_000


def test_idle_partition_stops_holding_the_watermark_back() -> None:
    store = new_store()
    fold(store, 1_500)
    store.observe(A, 5_000, 0.0)
    store.observe(B, 1_100, 0.0)
    store.advance(0.0)

    # B last delivered at 0 s: still active just before the idle timeout.
    assert tick(store, 5_500, IDLE_S - 0.001, partition=A) == []
    assert store.watermark == 1_100

    rows = tick(store, 5_600, IDLE_S, partition=A)

    assert rows == [usage(1_000, "1", 1)]
    assert store.watermark == 5_600


def test_partition_that_comes_back_holds_the_watermark_again() -> None:
    store = new_store()
    store.observe(A, 5_000, 0.0)
    store.observe(B, 1_100, 0.0)
    tick(store, 6_000, 20.0, partition=A)
    assert store.watermark == 6_000

    tick(store, 1_200, 21.0, partition=B)
    tick(store, 9_000, 21.0, partition=A)

    # B's maximum is behind: the watermark waits (it does not go back, it stops).
    assert store.watermark == 6_000


def test_all_partitions_quiet_advance_the_watermark_by_the_quiet_time() -> None:
    store = new_store()
    fold(store, 1_500)
    tick(store, 1_500, 0.0)

    assert store.advance(IDLE_S - 0.001) == []
    assert store.watermark == 1_500

    rows = store.advance(IDLE_S)

    assert rows == [usage(1_000, "1", 1)]
    assert store.watermark == 1_500 + IDLE_MS
    store.advance(IDLE_S + 2.0)
    assert store.watermark == 1_500 + IDLE_MS + 2_000


def test_quiet_time_counts_from_the_last_batch_of_any_partition() -> None:
    store = new_store()
    store.observe(A, 1_500, 0.0)
    store.observe(B, 1_400, 5.0)

    store.advance(5.0 + IDLE_S)

    assert store.watermark == 1_500 + IDLE_MS


def test_zero_idle_timeout_advances_with_the_quiet_time_at_once() -> None:
    config = WindowConfig(size_ms=SIZE, grace_ms=GRACE, settlement_ms=SETTLEMENT, idle_timeout_ms=0)
    store = new_store(config)
    tick(store, 1_500, 0.0)

    store.advance(0.25)

    assert store.watermark == 1_750


# --- close_all --------------------------------------------------------------------------------


def test_close_all_closes_every_open_window() -> None:
    store = new_store()
    fold(store, 500, "1")
    fold(store, 5_500, "2")
    fold(store, 2_500, "3")

    rows = store.close_all()

    assert rows == [usage(0, "1", 1), usage(2_000, "3", 1), usage(5_000, "2", 1)]
    assert store.open == {}
    assert store.watermark == 6_000 + GRACE


def test_close_all_emits_pending_adjustments_too() -> None:
    store = new_store()
    fold(store, 1_100, "5")
    tick(store, 2_000 + GRACE)
    fold(store, 1_200, "1")
    fold(store, 2_500, "2")

    rows = store.close_all()

    assert rows == [
        usage(2_000, "2", 1),
        usage(1_000, "6", 2, WindowKind.ADJUSTMENT, previous="5"),
    ]


def test_close_all_on_an_empty_store_does_nothing() -> None:
    store = new_store()
    tick(store, 5_000)

    assert store.close_all() == []
    assert store.watermark == 5_000


# --- next_wakeup ------------------------------------------------------------------------------


def test_no_wakeup_without_open_windows_or_pending_adjustments() -> None:
    store = new_store()
    assert store.next_wakeup(0.0) is None
    tick(store, 5_000, 0.0)
    assert store.next_wakeup(1.0) is None


def test_wakeup_when_the_earliest_active_partition_goes_idle() -> None:
    store = new_store()
    fold(store, 1_500)
    store.observe(A, 1_500, 2.0)
    store.observe(B, 1_500, 4.0)
    store.advance(4.0)

    assert store.next_wakeup(5.0) == 2.0 + IDLE_S


def test_wakeup_for_pending_adjustments_is_now() -> None:
    store = new_store()
    fold(store, 1_100)
    tick(store, 2_000 + GRACE, 0.0)
    fold(store, 1_200)

    assert store.next_wakeup(100.0) == 100.0


def test_following_the_wakeups_closes_an_idle_window_on_time() -> None:
    config = WindowConfig(
        size_ms=SIZE, grace_ms=GRACE, settlement_ms=SETTLEMENT, idle_timeout_ms=500
    )
    store = new_store(config)
    fold(store, 100)
    tick(store, 100, 0.0)
    # Quiet time needed: the window is due at 1_200 ms, the input reached 100 ms.
    due_s = (1_000 + GRACE - 100) / 1000

    now = 0.0
    rows: list[WindowUsage] = []
    for _ in range(10):
        wakeup = store.next_wakeup(now)
        assert wakeup is not None
        assert wakeup > now or wakeup >= due_s
        now = wakeup
        rows = store.advance(now)
        if rows:
            break

    assert rows == [usage(0, "1", 1)]
    assert due_s <= now <= due_s + 0.01
    assert store.next_wakeup(now) is None


# --- restarts ---------------------------------------------------------------------------------


def test_pickle_keeps_windows_and_watermark() -> None:
    store = new_store()
    fold(store, 1_100, "5")
    fold(store, 3_100, "2")
    tick(store, 2_000 + GRACE, 50.0)

    restored: WindowStore = pickle.loads(pickle.dumps(store))

    assert restored.watermark == store.watermark
    assert restored.partition_max == store.partition_max
    assert restored.open.keys() == store.open.keys()
    assert restored.settled.keys() == store.settled.keys()
    assert restored.close_all() == [usage(3_000, "2", 1)]


def test_downtime_after_resume_does_not_make_events_late() -> None:
    store = new_store()
    fold(store, 4_100)
    tick(store, 4_500, 100.0)
    # Down for a day: monotonic clocks of the new process are far ahead.
    restored: WindowStore = pickle.loads(pickle.dumps(store))
    restart_s = 100.0 + 86_400.0

    restored.resume(restart_s)
    rows = tick(restored, 4_600, restart_s + 0.5)

    assert rows == []
    assert restored.watermark == 4_600
    assert restored.lateness(4_600, restored.progress(A)) is Lateness.OPEN
    # Closed before, still not too late.
    assert restored.lateness(3_999, restored.progress(A)) is Lateness.LATE


def test_live_store_quiet_for_the_same_time_closes_everything_but_makes_nothing_late() -> None:
    # The contrast to the resume contract: real quiet time does advance the watermark,
    # which closes windows; lateness follows event time only.
    store = new_store()
    fold(store, 4_100)
    tick(store, 4_500, 100.0)

    rows = store.advance(100.0 + 86_400.0)

    assert rows == [usage(4_000, "1", 1)]
    assert store.lateness(4_600, store.progress(A)) is Lateness.OPEN
    assert 4_000 in store.settled  # partition A can still revise it


def test_quiet_time_counts_from_resume() -> None:
    store = new_store()
    tick(store, 4_500, 100.0)
    restored: WindowStore = pickle.loads(pickle.dumps(store))

    restored.resume(1_000.0)
    restored.advance(1_000.0 + IDLE_S - 0.001)
    assert restored.watermark == 4_500

    restored.advance(1_000.0 + IDLE_S)
    assert restored.watermark == 4_500 + IDLE_MS


def test_partition_that_never_returns_after_resume_goes_idle() -> None:
    store = new_store()
    store.observe(A, 9_000, 0.0)
    store.observe(B, 1_100, 0.0)
    store.advance(0.0)
    restored: WindowStore = pickle.loads(pickle.dumps(store))

    restored.resume(500.0)
    tick(restored, 9_500, 500.0 + IDLE_S, partition=A)

    assert restored.watermark == 9_500


# --- totals are independent of order, batching and watermark moves ---------------------------

# Times near window boundaries (start, end - 1, end + grace) are drawn often, so the
# watermark lands exactly on the close and settlement edges.
TIME = st.one_of(
    st.integers(min_value=0, max_value=12_999),
    st.builds(
        lambda window, offset: window * SIZE + offset,
        st.integers(min_value=0, max_value=12),
        st.sampled_from([0, 1, GRACE - 1, GRACE, SIZE - 1]),
    ),
)
EVENT = st.tuples(
    TIME,
    st.integers(min_value=0, max_value=1_000),  # value
    st.sampled_from(["acme", "globex"]),
)
STEP: st.SearchStrategy[tuple[str, Any, list[tuple[int, int, str]]]] = st.one_of(
    st.tuples(st.just("batch"), st.sampled_from([A, B]), st.lists(EVENT, min_size=1, max_size=8)),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 3.0, IDLE_S, 2 * IDLE_S]), st.just([])),
)


@settings(max_examples=300)
@given(steps=st.lists(STEP, max_size=25))
def test_highest_revisions_add_up_to_every_event_that_was_not_too_late(
    steps: list[tuple[str, object, list[tuple[int, int, str]]]],
) -> None:
    # Both partitions named up front, as every source of ours does.
    store = WindowStore(CONFIG, AGGREGATIONS, expected_partitions=[A, B])
    store.resume(0.0)
    now_s = 0.0
    rows: list[WindowUsage] = []
    expected_sum: dict[tuple[int, str], int] = defaultdict(int)
    expected_count: dict[tuple[int, str], int] = defaultdict(int)
    serial = 0

    for kind, arg, events in steps:
        if kind == "wait":
            now_s += arg  # type: ignore[operator]
            rows += store.advance(now_s)
            continue
        progress = store.progress(arg)  # type: ignore[arg-type]
        for time_ms, value, tenant in events:
            end = time_ms - time_ms % SIZE + SIZE
            progress = max(progress, time_ms)
            too_late = end + SETTLEMENT <= progress
            assert (store.lateness(time_ms, progress) is Lateness.TOO_LATE) == too_late
            if too_late:
                continue
            serial += 1
            store.fold(
                Event(
                    tenant,
                    "gateway",
                    f"evt-{serial}",
                    "llm.completion",
                    time_ms,
                    (Measure("tokens", Decimal(value), ()), Measure("completions", None, ())),
                    make_event(time_ms).message,
                )
            )
            expected_sum[(end - SIZE, tenant)] += value
            expected_count[(end - SIZE, tenant)] += 1
        store.observe(arg, max(t for t, _, _ in events), now_s)  # type: ignore[arg-type]
        rows += store.advance(now_s)
    rows += store.close_all()

    history: dict[tuple[int, str, str], list[WindowUsage]] = defaultdict(list)
    for row in rows:
        assert row.window_end_ms == row.window_start_ms + SIZE
        history[(row.window_start_ms, row.tenant, row.meter)].append(row)
    final: dict[tuple[int, str, str], WindowUsage] = {}
    for key, revisions in history.items():
        # Each row revises the one before it; only the first can be a WINDOW row.
        previous = Decimal(0)
        for i, row in enumerate(revisions):
            assert row.previous_quantity == previous
            if i:
                assert row.kind is WindowKind.ADJUSTMENT
            previous = row.quantity
        assert [r.revision for r in revisions] == sorted({r.revision for r in revisions})
        final[key] = max(revisions, key=lambda r: r.revision)

    assert {(s, t): int(r.quantity) for (s, t, m), r in final.items() if m == "tokens"} == dict(
        expected_sum
    )
    assert {(s, t): int(r.quantity) for (s, t, m), r in final.items() if m == "completions"} == (
        dict(expected_count)
    )
    assert all(r.revision == expected_count[(s, t)] for (s, t, _), r in final.items())
    assert store.open == {}


def test_an_expected_partition_holds_the_watermark_until_it_delivers() -> None:
    # Two consumers start at slightly different times: the first must not make the
    # second's first events late.
    store = WindowStore(CONFIG, AGGREGATIONS, expected_partitions=[A, B])
    store.resume(0.0)
    fold(store, 100)
    assert tick(store, 50_000, now_s=1.0, partition=A) == []
    assert store.watermark == NO_WATERMARK
    assert store.lateness(150, store.progress(B)) is Lateness.OPEN

    fold(store, 120)
    closed = tick(store, 40_000, now_s=2.0, partition=B)

    assert store.watermark == 40_000
    assert [(u.window_start_ms, u.quantity) for u in closed] == [(0, Decimal(2))]


def test_an_expected_partition_that_never_delivers_stops_holding_after_idle_timeout() -> None:
    store = WindowStore(CONFIG, AGGREGATIONS, expected_partitions=[A, B])
    store.resume(0.0)
    tick(store, 50_000, now_s=1.0, partition=A)
    assert store.watermark == NO_WATERMARK

    tick(store, 50_000, now_s=IDLE_S + 0.5, partition=A)  # B silent since start

    assert store.watermark == 50_000


def test_expected_partitions_hold_again_after_a_restore() -> None:
    store = WindowStore(CONFIG, AGGREGATIONS, expected_partitions=[A, B])
    store.resume(0.0)
    tick(store, 5_000, now_s=1.0, partition=A)
    tick(store, 5_000, now_s=1.0, partition=B)
    restored: WindowStore = pickle.loads(pickle.dumps(store))
    restored.resume(1_000.0)  # long downtime

    tick(restored, 60_000, now_s=1_001.0, partition=A)

    # B is still behind at 5 s until it delivers or stays quiet for idle_timeout.
    assert restored.watermark == 5_000
