"""Clocks for tests: the same test at clocks years apart shows it does not depend on today.

Tests whose outcome involves "now" (expiry, the current period, the future-skew
check) take one of ``CLOCK_OFFSETS`` and derive every instant from the clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from config.clock import ShiftedClock

DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS

# Three years back, today, five years ahead.
CLOCK_OFFSETS = [
    pytest.param(-3 * YEAR_MS, id="clock-3y"),
    pytest.param(0, id="clock-now"),
    pytest.param(5 * YEAR_MS, id="clock+5y"),
]


def month_start_ms(at_ms: int) -> int:
    """00:00 UTC on the first day of the month holding ``at_ms``."""
    day = datetime.fromtimestamp(at_ms / 1000, UTC)
    return int(day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def mid_month_clock(offset_ms: int) -> ShiftedClock:
    """A running clock about ``offset_ms`` from today, moved to the 15th of its month (UTC).

    Tests that work within the current billing period (calendar months) then
    have two weeks on either side of it, whatever day they run.
    """
    real_ms = time.time_ns() // 1_000_000
    target = month_start_ms(real_ms + offset_ms) + 14 * DAY_MS + real_ms % DAY_MS
    return ShiftedClock(target - real_ms)
