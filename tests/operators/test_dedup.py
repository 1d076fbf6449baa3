"""Duplicate detection by idempotency key, with expiry by event-time bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.dedup import DedupState

BUCKET_MS = 1_000
HORIZON_MS = 5_000


def test_second_sighting_is_a_duplicate() -> None:
    state = DedupState(HORIZON_MS, bucket_ms=BUCKET_MS)

    assert state.add("gateway\x1fevt-1", 10_500) is True
    assert state.add("gateway\x1fevt-1", 10_500) is False
    assert state.add("gateway\x1fevt-1", 99_000) is False  # same key, any time
    assert state.add("gateway\x1fevt-2", 10_500) is True
    assert len(state) == 2
    assert "gateway\x1fevt-1" in state


def test_key_kept_until_watermark_minus_horizon_reaches_its_bucket_end() -> None:
    state = DedupState(HORIZON_MS, bucket_ms=BUCKET_MS)
    state.add("k", 10_500)  # bucket [10_000, 11_000)
    bucket_end = 11_000

    assert state.expire(bucket_end + HORIZON_MS - 1) == 0
    assert "k" in state
    assert state.add("k", 10_500) is False

    assert state.expire(bucket_end + HORIZON_MS) == 1
    assert "k" not in state
    assert len(state) == 0


def test_zero_horizon_expires_at_bucket_end() -> None:
    state = DedupState(0, bucket_ms=BUCKET_MS)
    state.add("k", 10_999)

    assert state.expire(10_999) == 0
    assert state.expire(11_000) == 1


def test_expiry_drops_only_due_buckets() -> None:
    state = DedupState(HORIZON_MS, bucket_ms=BUCKET_MS)
    for i in range(10):
        state.add(f"k{i}", i * BUCKET_MS + 1)

    dropped = state.expire(5 * BUCKET_MS + HORIZON_MS)

    assert dropped == 5
    assert sorted(k for k in (f"k{i}" for i in range(10)) if k in state) == [
        f"k{i}" for i in range(5, 10)
    ]


def test_memory_is_bounded_by_the_horizon() -> None:
    state = DedupState(HORIZON_MS, bucket_ms=BUCKET_MS)
    for time_ms in range(0, 100_000, 10):
        state.add(f"evt-{time_ms}", time_ms)
        state.expire(time_ms)

    # Only buckets ending after watermark - horizon survive: the last 6 (5 s + the current one).
    assert len(state) <= (HORIZON_MS + BUCKET_MS) // 10
    assert len(state) >= HORIZON_MS // 10


def test_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError):
        DedupState(-1)
    with pytest.raises(ValueError):
        DedupState(1_000, bucket_ms=0)


class ReferenceDedup:
    """The naive model: every (key, time) kept until its bucket end + horizon <= watermark."""

    def __init__(self, horizon_ms: int, bucket_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self.bucket_ms = bucket_ms
        self.times: dict[str, int] = {}

    def add(self, key: str, time_ms: int) -> bool:
        if key in self.times:
            return False
        self.times[key] = time_ms
        return True

    def expire(self, watermark_ms: int) -> int:
        due = [
            key
            for key, time_ms in self.times.items()
            if (time_ms // self.bucket_ms + 1) * self.bucket_ms + self.horizon_ms <= watermark_ms
        ]
        for key in due:
            del self.times[key]
        return len(due)


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"), st.sampled_from("abcdefgh"), st.integers(min_value=0, max_value=20_000)
        ),
        st.tuples(st.just("expire"), st.just(""), st.integers(min_value=0, max_value=30_000)),
    ),
    max_size=80,
)


@given(
    operations=OPERATIONS,
    horizon_ms=st.integers(min_value=0, max_value=5_000),
    bucket_ms=st.sampled_from([1, 7, 1_000, 60_000]),
)
def test_matches_the_naive_model(
    operations: list[tuple[str, str, int]], horizon_ms: int, bucket_ms: int
) -> None:
    state = DedupState(horizon_ms, bucket_ms=bucket_ms)
    model = ReferenceDedup(horizon_ms, bucket_ms)

    for operation, key, number in operations:
        if operation == "add":
            assert state.add(key, number) == model.add(key, number)
        else:
            assert state.expire(number) == model.expire(number)
        assert len(state) == len(model.times)
        assert {k for k in "abcdefgh" if k in state} == set(model.times)
