"""How the commands print decimals and instants: exact, never in exponent notation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def decimal_text(value: Decimal, *, trim: bool = False) -> str:
    """``value`` without exponent notation (8E-7 reads 0.0000008).

    ``trim`` drops trailing zeros (1.50 reads 1.5, 1.2E+3 reads 1200); money
    rounded to its minor unit keeps them.
    """
    return format(value.normalize() if trim else value, "f")


def iso_utc(ms: int) -> str:
    """RFC 3339 in UTC: ``2026-11-01T00:00:00Z``, with milliseconds only when there are any."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    text = moment.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")
