"""Batch sources: each item is a sequence of RawMessage from ONE input partition.

Batching at the source keeps the per-event engine overhead near zero; the
single-partition rule lets the metering step track event-time progress per
input partition.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from config.clock import SYSTEM_CLOCK, Clock, engine_deadline
from dataflows.shutdown import StopRequest
from operators.model import RawMessage
from operators.synthetic import SyntheticPartition, SyntheticSpec

# A list, or the Kafka source's columns (operators.message_batch.MessageBatch).
Batch = Sequence[RawMessage]


class JsonlFileSource(FixedPartitionedSource[Batch, tuple[int, int]]):
    """Newline-delimited events from files; one partition per file.

    The offset of a message is its 1-based line number, so dead letters point
    at the line to fix. Resume state is the byte position of the next line.
    Once ``stop`` is requested, every partition ends at its next read.
    """

    def __init__(
        self,
        paths: list[Path],
        batch_size: int = 1000,
        stop: StopRequest | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._paths = {str(path): path for path in paths}
        self._batch_size = batch_size
        self._stop = stop or StopRequest()
        self._clock = clock

    def list_parts(self) -> list[str]:
        """One partition per file."""
        return list(self._paths)

    def input_partitions(self) -> list[tuple[str, int]]:
        """(origin, partition) of every input partition, as RawMessage names them."""
        return [(name, 0) for name in self._paths]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _JsonlPartition:
        """Open the file at the resume position."""
        return _JsonlPartition(
            self._paths[for_part], self._batch_size, resume_state, self._stop, self._clock
        )


class _JsonlPartition(StatefulSourcePartition[Batch, tuple[int, int]]):
    def __init__(
        self,
        path: Path,
        batch_size: int,
        resume: tuple[int, int] | None,
        stop: StopRequest,
        clock: Clock,
    ) -> None:
        self._stop = stop
        self._clock = clock
        self._origin = str(path)
        self._file = path.open("rb")
        self._batch_size = batch_size
        self._position, self._line = resume or (0, 0)
        self._file.seek(self._position)

    def next_batch(self) -> list[Batch]:
        if self._stop.requested:
            raise StopIteration
        batch: list[RawMessage] = []
        readline = self._file.readline
        now_ms = self._clock.now_ms()
        while len(batch) < self._batch_size:
            line = readline()
            if not line:
                break
            self._line += 1
            payload = line.rstrip(b"\r\n")
            # Blank lines are layout, not events.
            if payload.strip():
                batch.append(RawMessage(payload, self._origin, 0, self._line, now_ms))
        self._position = self._file.tell()
        if not batch:
            if not line:
                raise StopIteration
            return []
        return [batch]

    def snapshot(self) -> tuple[int, int]:
        return (self._position, self._line)

    def close(self) -> None:
        self._file.close()


class SyntheticSource(FixedPartitionedSource[Batch, dict[str, int]]):
    """The built-in generator, optionally rate-limited (events/s over all partitions).

    Once ``stop`` is requested, every partition ends at its next batch.
    """

    ORIGIN = "synthetic"

    def __init__(
        self,
        spec: SyntheticSpec,
        batch_size: int = 1000,
        rate: float = 0.0,
        stop: StopRequest | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._spec = spec
        self._batch_size = batch_size
        self._rate = rate / spec.partitions if rate else 0.0
        self._stop = stop or StopRequest()
        self._clock = clock

    def list_parts(self) -> list[str]:
        """One partition per generator partition."""
        return [str(p) for p in range(self._spec.partitions)]

    def input_partitions(self) -> list[tuple[str, int]]:
        """(origin, partition) of every input partition, as RawMessage names them."""
        return [(self.ORIGIN, p) for p in range(self._spec.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _SyntheticPartition:
        """Resume at the next position of the partition."""
        return _SyntheticPartition(
            SyntheticPartition(self._spec, int(for_part)),
            self._batch_size,
            self._rate,
            resume_state,
            stop=self._stop,
            clock=self._clock,
        )


class _SyntheticPartition(StatefulSourcePartition[Batch, dict[str, int]]):
    def __init__(
        self,
        events: SyntheticPartition,
        batch_size: int,
        rate: float,
        resume: dict[str, int] | None,
        *,
        stop: StopRequest,
        clock: Clock,
    ) -> None:
        self._stop = stop
        self._clock = clock
        self._events = events
        self._batch_size = batch_size
        self._rate = rate
        self._next = (resume or {}).get("next", 0)
        self._emitted = (resume or {}).get("emitted", 0)
        self._started = time.monotonic()
        self._emitted_at_start = self._emitted

    def next_batch(self) -> list[Batch]:
        if self._next >= self._events.count or self._stop.requested:
            raise StopIteration
        end = min(self._events.count, self._next + self._batch_size)
        partition = self._events.partition
        batch: list[RawMessage] = []
        now_ms = self._clock.now_ms()
        for n in range(self._next, end):
            for payload in self._events.payloads(n):
                self._emitted += 1
                batch.append(
                    RawMessage(payload, SyntheticSource.ORIGIN, partition, self._emitted, now_ms)
                )
        self._next = end
        return [batch]

    def next_awake(self) -> datetime | None:
        if not self._rate:
            return None
        due_s = (self._emitted - self._emitted_at_start) / self._rate
        wait_s = due_s - (time.monotonic() - self._started)
        return engine_deadline(wait_s) if wait_s > 0 else None

    def snapshot(self) -> dict[str, int]:
        return {"next": self._next, "emitted": self._emitted}
