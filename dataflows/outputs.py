"""Bytewax sinks around the engine-free writers in sinks/.

Each sink has a single partition, so every row of a run goes through one
writer in one process: chDB allows one process per data path, and rated
windows (aggregates) and rejections are few enough for one writer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from operators.model import RatedWindow, Rejection
from sinks.clickhouse import ClickHouseWriter

PART = "clickhouse"


class _WriterSink(FixedPartitionedSink[Any, None]):
    def __init__(self, open_writer: Callable[[], ClickHouseWriter]) -> None:
        self._open_writer = open_writer

    def list_parts(self) -> list[str]:
        return [PART]

    def part_fn(self, item_key: str) -> int:
        return 0


class RatedWindowSink(_WriterSink):
    """Rated window revisions into ClickHouse; items are ``(key, RatedWindow)``."""

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _WindowPartition:
        return _WindowPartition(self._open_writer())


class RejectionSink(_WriterSink):
    """Rejected events into ClickHouse; items are ``(key, Rejection)``."""

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _RejectionPartition:
        return _RejectionPartition(self._open_writer())


class _WindowPartition(StatefulSinkPartition[RatedWindow, None]):
    def __init__(self, writer: ClickHouseWriter) -> None:
        self._writer = writer

    def write_batch(self, values: list[RatedWindow]) -> None:
        # Blocks (retrying) until ClickHouse has the rows: input waits meanwhile.
        self._writer.write_windows(values)

    def snapshot(self) -> None:
        return None


class _RejectionPartition(StatefulSinkPartition[Rejection, None]):
    def __init__(self, writer: ClickHouseWriter) -> None:
        self._writer = writer

    def write_batch(self, values: list[Rejection]) -> None:
        self._writer.write_rejections(values)

    def snapshot(self) -> None:
        return None
