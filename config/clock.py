"""The one wall clock: what "now" means for the flow, the writers and the commands.

Everything that needs the wall time in epoch milliseconds takes a ``Clock`` and
asks ``clock.now_ms()``; only ``SystemClock`` reads the host's clock. Tests (and
``meterwax --test-clock-offset-ms``) move time with ``ShiftedClock`` or pin it
with ``FixedClock``, so no test depends on today's date. Durations are measured
with ``time.monotonic()`` and are no business of this module.

Two things are deliberately not read through it: wake-up times handed to the
engine (``engine_deadline``), which Bytewax compares with the host's clock, and
expiry inside Redis, which the server counts on its own clock (so writers send
relative TTLs computed from our clock, never absolute instants).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Wall time in epoch milliseconds."""

    def now_ms(self) -> int:
        """The current instant, epoch milliseconds (UTC)."""
        ...


@dataclass(frozen=True)
class SystemClock:
    """The host's clock."""

    def now_ms(self) -> int:
        """The host's wall time."""
        return time.time_ns() // 1_000_000


SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True)
class ShiftedClock:
    """The host's clock moved by ``offset_ms`` (negative: into the past); it keeps running."""

    offset_ms: int

    def now_ms(self) -> int:
        """The host's wall time plus the offset."""
        return time.time_ns() // 1_000_000 + self.offset_ms


@dataclass(frozen=True)
class FixedClock:
    """A clock that always reads ``at_ms`` (for reports and tests that need one exact instant)."""

    at_ms: int

    def now_ms(self) -> int:
        """Always ``at_ms``."""
        return self.at_ms


def engine_deadline(seconds: float) -> datetime:
    """The engine's wake-up time ``seconds`` from now (for ``notify_at``/``next_awake``).

    Bytewax compares these with the host's clock, so an injected clock must not move them.
    """
    return datetime.now(UTC) + timedelta(seconds=seconds)
