"""BufferedPartition: when buffered rows are written."""

from __future__ import annotations

from collections.abc import Sequence

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
