"""Tenant-to-shard assignment: stable across processes, in range, evenly spread."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.sharding import shard_of


@pytest.mark.parametrize(
    ("tenant", "shards", "shard"),
    [
        ("acme", 8, "6"),
        ("globex", 8, "2"),
        ("initech", 8, "0"),
        ("", 8, "0"),
        ("acme", 64, "62"),
        ("acme", 1, "0"),
        ("tenant-é", 8, "2"),
    ],
)
def test_known_assignments_never_change(tenant: str, shards: int, shard: str) -> None:
    # Pinned: changing the hash would move every tenant's state to another shard.
    assert shard_of(tenant, shards) == shard


def test_same_shard_in_another_process() -> None:
    # hash() would pass within one process and fail here: it is salted per process.
    code = "from operators.sharding import shard_of; print(shard_of('acme', 1000))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert out.strip() == shard_of("acme", 1000)


def test_lone_surrogates_do_not_crash() -> None:
    assert shard_of("\udc80", 8) == "3"


@given(tenant=st.text(max_size=64), shards=st.integers(min_value=1, max_value=512))
def test_shard_is_a_decimal_string_in_range(tenant: str, shards: int) -> None:
    shard = shard_of(tenant, shards)

    assert shard == str(int(shard))
    assert 0 <= int(shard) < shards
    assert shard_of(tenant, shards) == shard


def test_distribution_is_roughly_even() -> None:
    shards = 16
    counts = Counter(shard_of(f"tenant-{i}", shards) for i in range(10_000))

    assert set(counts) == {str(i) for i in range(shards)}
    expected = 10_000 / shards
    assert all(0.8 * expected <= n <= 1.2 * expected for n in counts.values()), counts
