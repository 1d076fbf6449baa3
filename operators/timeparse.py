"""RFC 3339 timestamps to UTC epoch milliseconds, strictly and fast."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# RFC 3339: full date, 'T' (or space, which RFC 3339 allows), time, optional
# fraction, and an offset that is required: an event time without one is ambiguous.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_HAS_OFFSET = re.compile(r".*(?:[Zz]|[+-]\d{2}:\d{2})$")
# Events of a busy stream share their second: cache its epoch value.
_SECONDS: dict[str, int] = {}
_SECONDS_LIMIT = 100_000


class TimeFormatError(ValueError):
    """The text is not an RFC 3339 timestamp with an offset."""


def parse_rfc3339_ms(text: str) -> int:
    """Parse ``text`` into UTC epoch milliseconds (sub-millisecond digits truncated)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        if _HAS_OFFSET.match(text) is None and text[:4].isdigit():
            raise TimeFormatError(f"time {text[:64]!r} has no UTC offset; add 'Z' or '+hh:mm'")
        raise TimeFormatError(
            f"time {text[:64]!r} is not RFC 3339, expected e.g. '2026-11-21T13:59:02.120Z'"
        )
    local, fraction, sign, off_hours, off_minutes = match.groups()
    seconds = _SECONDS.get(local)
    if seconds is None:
        seconds = _epoch_seconds(local, text)
        if len(_SECONDS) >= _SECONDS_LIMIT:
            _SECONDS.clear()
        _SECONDS[local] = seconds
    millis = seconds * 1000
    if fraction:
        millis += int(fraction[:3].ljust(3, "0"))
    if sign:
        hours, minutes = int(off_hours), int(off_minutes)
        if hours > 23 or minutes > 59:
            raise TimeFormatError(f"time {text[:64]!r} has an impossible UTC offset")
        offset_ms = (hours * 60 + minutes) * 60_000
        millis += -offset_ms if sign == "+" else offset_ms
    return millis


def _epoch_seconds(local: str, text: str) -> int:
    try:
        moment = datetime(
            int(local[0:4]),
            int(local[5:7]),
            int(local[8:10]),
            int(local[11:13]),
            int(local[14:16]),
            int(local[17:19]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise TimeFormatError(f"time {text[:64]!r} is not a real date or time: {exc}") from None
    delta = moment - _EPOCH
    return delta.days * 86_400 + delta.seconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
