"""BufferedPartition: when buffered rows are written."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from dataflows.outputs import BufferedPartition


def test_items_holding_several_rows_count_by_rows() -> None:
    """A batch of revisions is many rows: the buffer flushes by rows, not by items."""
    written: list[list[list[int]]] = []

    def write(items: Sequence[list[int]]) -> int:
        written.append(list(items))
        return sum(map(len, items))

    buffer = BufferedPartition(write, max_rows=5, max_delay_s=3600, size=len)
    buffer.write_batch([[1, 2, 3]])
    assert written == []
    buffer.write_batch([[4, 5]])
    assert written == [[[1, 2, 3], [4, 5]]]
    buffer.write_batch([[6], [7]])
    assert written == [[[1, 2, 3], [4, 5]]]
    buffer.snapshot()
    assert written == [[[1, 2, 3], [4, 5]], [[6], [7]]]


def test_items_are_rows_by_default() -> None:
    written: list[list[str]] = []

    def write(items: Sequence[str]) -> None:
        written.append(list(items))

    buffer = BufferedPartition(write, max_rows=2, max_delay_s=3600)
    buffer.write_batch(["a"])
    assert written == []
    buffer.write_batch(["b"])
    assert written == [["a", "b"]]


def test_in_the_background_writes_keep_their_order_and_a_snapshot_waits_for_them() -> None:
    started, release = threading.Event(), threading.Event()
    written: list[list[str]] = []

    def write(items: Sequence[str]) -> None:
        started.set()
        release.wait(5)
        written.append(list(items))

    buffer = BufferedPartition(write, max_rows=1, max_delay_s=3600, background=True)
    buffer.write_batch(["a"])  # handed to the writer thread: the flow goes on
    assert started.wait(5) and written == []
    release.set()
    buffer.write_batch(["b"])  # waits for "a" first
    buffer.snapshot()  # and for "b": nothing a snapshot covers is left unwritten
    assert written == [["a"], ["b"]]
    buffer.close()


def test_in_the_background_a_failed_write_stops_the_next_flush_and_is_not_retried() -> None:
    attempts: list[list[str]] = []

    def write(items: Sequence[str]) -> None:
        attempts.append(list(items))
        raise OSError("disk full")

    buffer = BufferedPartition(write, max_rows=1, max_delay_s=3600, background=True)
    buffer.write_batch(["a"])
    with pytest.raises(OSError, match="disk full"):
        buffer.snapshot()
    buffer.write_batch(["b"])  # the flow is stopping: nothing more is written
    buffer.close()
    assert attempts == [["a"]]
