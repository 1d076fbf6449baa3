"""One input partition's batch of raw messages, as columns.

The Kafka source reads a poll straight into columns (the payloads in one
buffer with their ends, the offsets, the arrival times), so the native core
parses and splits a batch without a Python object per message. It is still a
``Sequence`` of ``RawMessage``, made on demand, for the Python operators and
for the rare message that becomes a dead letter.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import overload

from operators.model import RawMessage


@dataclass(frozen=True, slots=True)
class MessageBatch(Sequence[RawMessage]):
    """Messages of one partition of ``origin``: message ``i`` is ``data[ends[i-1]:ends[i]]``."""

    origin: str
    partition: int
    data: bytes
    # Typecodes: ends "Q", offsets and arrivals_ms "q".
    ends: array[int]
    offsets: array[int]
    arrivals_ms: array[int]

    @classmethod
    def of_payloads(
        cls,
        origin: str,
        partition: int,
        payloads: Sequence[bytes],
        offsets: array[int],
        arrivals_ms: array[int],
    ) -> MessageBatch:
        """A batch of ``payloads`` with their offsets and arrival times (same lengths)."""
        if not len(payloads) == len(offsets) == len(arrivals_ms):
            raise ValueError(
                f"{len(payloads)} payloads need as many offsets and arrival times, "
                f"got {len(offsets)} and {len(arrivals_ms)}"
            )
        ends = array("Q", accumulate(map(len, payloads)))
        return cls(origin, partition, b"".join(payloads), ends, offsets, arrivals_ms)

    @classmethod
    def of(cls, messages: Sequence[RawMessage]) -> MessageBatch:
        """``messages`` (all of one partition, at least one) as a batch; a batch as it is."""
        if isinstance(messages, MessageBatch):
            return messages
        if not messages:
            raise ValueError("a batch needs at least one message to know its partition")
        origin, partition = messages[0].origin, messages[0].partition
        if any(m.origin != origin or m.partition != partition for m in messages):
            raise ValueError(f"a batch holds messages of one partition ({origin}[{partition}])")
        return cls.of_payloads(
            origin,
            partition,
            [m.payload for m in messages],
            array("q", [m.offset for m in messages]),
            array("q", [m.arrived_ms for m in messages]),
        )

    def payload(self, index: int) -> bytes:
        """The bytes of message ``index`` (>= 0)."""
        start = self.ends[index - 1] if index else 0
        return self.data[start : self.ends[index]]

    def __len__(self) -> int:
        return len(self.ends)

    @overload
    def __getitem__(self, index: int) -> RawMessage: ...

    @overload
    def __getitem__(self, index: slice) -> list[RawMessage]: ...

    def __getitem__(self, index: int | slice) -> RawMessage | list[RawMessage]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"message {index} of a batch of {len(self)}")
        return RawMessage(
            self.payload(index),
            self.origin,
            self.partition,
            self.offsets[index],
            self.arrivals_ms[index],
        )

    def __iter__(self) -> Iterator[RawMessage]:
        return map(self.__getitem__, range(len(self)))
