"""How the commands print decimals, instants and text from events.

Decimals and instants are exact, never in exponent notation; text that came
from events (tenants, group values) is escaped, so it cannot forge lines or
colours on a terminal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Control characters (C0, DEL, C1: newlines, escape sequences), line and
# paragraph separators, bidirectional overrides and isolates; and the backslash,
# so that an escape in the output always means an escaped character.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\\]")


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


def printable(text: str) -> str:
    """``text`` with control characters written as Python escapes (a newline reads ``\\n``)."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")
