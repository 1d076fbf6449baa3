"""RFC 3339 timestamps to UTC epoch milliseconds, strictly."""

from __future__ import annotations

import re
from datetime import datetime

# RFC 3339: full date, 'T' (or space, which RFC 3339 allows), time, optional
# fraction, and an offset that is required: an event time without one is ambiguous.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_HAS_OFFSET = re.compile(r".*(?:[Zz]|[+-]\d{2}:\d{2})$")


class TimeFormatError(ValueError):
    """The text is not an RFC 3339 timestamp with an offset."""


def parse_rfc3339_ms(text: str) -> int:
    """Parse ``text`` into UTC epoch milliseconds (sub-millisecond digits truncated)."""
    if not _RFC3339.fullmatch(text):
        if _HAS_OFFSET.match(text) is None and text[:4].isdigit():
            raise TimeFormatError(f"time {text[:64]!r} has no UTC offset; add 'Z' or '+hh:mm'")
        raise TimeFormatError(
            f"time {text[:64]!r} is not RFC 3339, expected e.g. '2026-11-21T13:59:02.120Z'"
        )
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError as exc:
        raise TimeFormatError(f"time {text[:64]!r} is not a real date or time: {exc}") from None
    # Integer arithmetic on the timedelta: exact, unlike float timestamp().
    delta = moment - _EPOCH
    return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) // 1000


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
