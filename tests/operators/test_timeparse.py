"""RFC 3339 event times to UTC epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.timeparse import TimeFormatError, parse_rfc3339_ms

JAN_2026_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
Y2000_MS = 946_684_800_000
Y2100_MS = 4_102_444_800_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", JAN_2026_MS),
        ("2026-01-01t00:00:00z", JAN_2026_MS),
        ("2026-01-01 00:00:00Z", JAN_2026_MS),
        ("2026-01-01T00:00:00+00:00", JAN_2026_MS),
        ("2026-01-01T00:00:00-00:00", JAN_2026_MS),
        ("2026-01-01T02:30:00+02:30", JAN_2026_MS),
        ("2025-12-31T19:00:00-05:00", JAN_2026_MS),
        ("2026-01-01T00:00:00.1Z", JAN_2026_MS + 100),
        ("2026-01-01T00:00:00.12Z", JAN_2026_MS + 120),
        ("2026-01-01T00:00:00.123Z", JAN_2026_MS + 123),
        ("2026-01-01T00:00:00.000001Z", JAN_2026_MS),
        ("2000-01-01T00:00:00Z", Y2000_MS),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000),
    ],
)
def test_parses_to_epoch_ms(text: str, expected: int) -> None:
    assert parse_rfc3339_ms(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T00:00:00.9999Z",
        "2026-01-01T00:00:00.999999Z",
        "2026-01-01T00:00:00.999999999Z",
        "2026-01-01T00:00:00.999999999+00:00",
    ],
)
def test_sub_millisecond_digits_are_truncated_not_rounded(text: str) -> None:
    assert parse_rfc3339_ms(text) == JAN_2026_MS + 999


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-01-01T00:00:00", "no UTC offset"),
        ("2026-01-01T00:00:00.120", "no UTC offset"),
        ("2026-01-01", "2026-01-01"),
        ("20260101T000000Z", "not RFC 3339"),
        ("2026-02-30T00:00:00Z", "not a real date"),
        ("2026-01-01T24:00:00Z", "not a real date"),
        ("2026-01-01T00:00:60Z", "not a real date"),
        ("2026-01-01T00:00:00+24:00", "2026-01-01"),
        ("2026-01-01T00:00:00+0100", "2026-01-01"),
        ("2026-01-01T00:00:00.Z", "2026-01-01"),
        ("2026-01-01T00:00:00.1234567890Z", "2026-01-01"),
        ("2026-1-01T00:00:00Z", "not RFC 3339"),
        ("2026-01-01T00:00Z", "not RFC 3339"),
        (" 2026-01-01T00:00:00Z", "not RFC 3339"),
        ("2026-01-01T00:00:00Z ", "2026-01-01"),
        ("now", "not RFC 3339"),
        ("", "not RFC 3339"),
    ],
)
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(TimeFormatError) as caught:
        parse_rfc3339_ms(text)

    assert message in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "\uff12\uff10\uff12\uff16-01-01T00:00:00Z",  # full-width digits
        "\u0662\u0660\u0662\u0666-01-01T00:00:00Z",  # Arabic-Indic digits
        "2026-01-01T00:00:00.\u0661\u0662\u0663Z",
    ],
)
def test_rejects_non_ascii_digits(text: str) -> None:
    # RFC 3339 DIGIT is ASCII 0-9; other Unicode digits are not a timestamp.
    with pytest.raises(TimeFormatError):
        parse_rfc3339_ms(text)


def test_error_quotes_at_most_64_characters() -> None:
    text = "2026-01-01T00:00:00" + "x" * 1000

    with pytest.raises(TimeFormatError) as caught:
        parse_rfc3339_ms(text)

    assert len(str(caught.value)) < 200


def _format(epoch_ms: int, offset_minutes: int, style: str) -> str:
    """``epoch_ms`` as RFC 3339 at the given UTC offset ('Z' for zero)."""
    moment = datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=epoch_ms)
    text = moment.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat(timespec=style)
    return text.replace("+00:00", "Z")


@given(
    epoch_ms=st.integers(min_value=Y2000_MS, max_value=Y2100_MS - 1),
    offset_minutes=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    style=st.sampled_from(["milliseconds", "microseconds"]),
)
def test_format_then_parse_is_identity(epoch_ms: int, offset_minutes: int, style: str) -> None:
    assert parse_rfc3339_ms(_format(epoch_ms, offset_minutes, style)) == epoch_ms
