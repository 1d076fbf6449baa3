"""Human durations for configuration: ``90s``, ``5m``, ``1h``, ``35d``, ``250ms``."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration_ms(value: object) -> int:
    """Parse ``value`` into milliseconds; plain numbers are seconds.

    Raises ValueError with the accepted forms when the text cannot be read.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; write e.g. '90s', '5m', '1h' or '35d'")
    if isinstance(value, int):
        return value * 1_000
    if isinstance(value, float):
        return round(value * 1_000)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return int(match.group(1)) * _UNITS_MS[match.group(2)]
        try:
            return round(float(value) * 1_000)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a duration; write e.g. '250ms', '90s', '5m', '1h' or '35d'")


def format_duration_ms(ms: int) -> str:
    """The shortest exact spelling of ``ms`` in the units above."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
