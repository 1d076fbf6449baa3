"""Parsing and validating CloudEvents: every rejection reason, and what accepted events carry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.aggregation import UniqueCountAccumulator
from operators.model import Measure, RawMessage, Reason, Rejection
from operators.parse import BatchParser, ParsedBatch, ParserConfig
from tests.operators.conftest import (
    DROP,
    JAN_2026_MS,
    KNOWN_TENANTS,
    NOW_MS,
    build_meter_catalog,
    payload,
    raw_message,
)

MAX_EVENT_BYTES = 4_096
MAX_FUTURE_SKEW_MS = 300_000
PARSER = BatchParser(
    ParserConfig(
        meters=build_meter_catalog(),
        known_tenant=KNOWN_TENANTS.__contains__,
        max_event_bytes=MAX_EVENT_BYTES,
        max_future_skew_ms=MAX_FUTURE_SKEW_MS,
    )
)
# time of the default cloud_event: 2026-03-01T12:00:00.250Z
EVENT_TIME_MS = JAN_2026_MS + 59 * 86_400_000 + 12 * 3_600_000 + 250


def parse(*payloads: bytes) -> ParsedBatch:
    return PARSER.parse(
        [raw_message(data, offset=i) for i, data in enumerate(payloads)], now_ms=NOW_MS
    )


def reject(data: bytes) -> Rejection:
    parsed = parse(data)
    assert parsed.events == []
    assert len(parsed.rejections) == 1
    return parsed.rejections[0]


def accept_one(data: bytes) -> Any:
    parsed = parse(data)
    assert parsed.rejections == [], parsed.rejections
    assert len(parsed.events) == 1
    return parsed.events[0]


def with_tokens_literal(literal: bytes) -> bytes:
    """A valid event whose ``data.tokens`` is the raw JSON text ``literal``."""
    return payload(data={"tokens": 0, "model": "gpt"}).replace(
        b'"tokens":0', b'"tokens":' + literal
    )


def data(**values: Any) -> dict[str, Any]:
    return {"model": "gpt", "region": "eu", **values}


REJECTIONS: list[Any] = [
    # malformed_json: the detail points at the position, there is no field to name
    pytest.param(payload()[:-7], Reason.MALFORMED_JSON, "line 1", id="truncated"),
    pytest.param(b"", Reason.MALFORMED_JSON, "line 1", id="empty"),
    pytest.param(
        payload(id="x").replace(b'"x"', b'"\xff\xfe"'),
        Reason.MALFORMED_JSON,
        "UTF-8",
        id="invalid-utf8",
    ),
    pytest.param(b"{'id': 'single quotes'}", Reason.MALFORMED_JSON, "line 1", id="not-json"),
    # not_an_object
    pytest.param(b"[1, 2]", Reason.NOT_AN_OBJECT, "array", id="array"),
    pytest.param(b'"event"', Reason.NOT_AN_OBJECT, "string", id="string"),
    pytest.param(b"null", Reason.NOT_AN_OBJECT, "null", id="null"),
    # missing_field
    pytest.param(payload(specversion=DROP), Reason.MISSING_FIELD, "specversion", id="no-spec"),
    pytest.param(payload(id=DROP), Reason.MISSING_FIELD, "id", id="no-id"),
    pytest.param(payload(id=""), Reason.MISSING_FIELD, "id", id="empty-id"),
    pytest.param(payload(id=None), Reason.MISSING_FIELD, "id", id="null-id"),
    pytest.param(payload(source=DROP), Reason.MISSING_FIELD, "source", id="no-source"),
    pytest.param(payload(type=DROP), Reason.MISSING_FIELD, "type", id="no-type"),
    pytest.param(payload(subject=DROP), Reason.MISSING_FIELD, "subject", id="no-subject"),
    pytest.param(payload(subject=""), Reason.MISSING_FIELD, "subject", id="empty-subject"),
    pytest.param(payload(time=DROP), Reason.MISSING_FIELD, "time", id="no-time"),
    pytest.param(payload(data=DROP), Reason.MISSING_FIELD, "data", id="no-data"),
    pytest.param(payload(data=None), Reason.MISSING_FIELD, "data", id="null-data"),
    # bad_type
    pytest.param(payload(specversion=1.0), Reason.BAD_TYPE, "specversion", id="spec-number"),
    pytest.param(payload(id=42), Reason.BAD_TYPE, "id", id="id-number"),
    pytest.param(payload(subject=["acme"]), Reason.BAD_TYPE, "subject", id="subject-array"),
    pytest.param(payload(time=1_767_225_600), Reason.BAD_TYPE, "time", id="time-number"),
    pytest.param(payload(data=[1]), Reason.BAD_TYPE, "data", id="data-array"),
    pytest.param(payload(data=data(tokens=True)), Reason.BAD_TYPE, "data.tokens", id="bool"),
    pytest.param(payload(data=data(tokens={"n": 1})), Reason.BAD_TYPE, "data.tokens", id="obj"),
    pytest.param(payload(data=data(model=["a"])), Reason.BAD_TYPE, "data.model", id="group"),
    pytest.param(
        payload(type="api.request", data={"user_id": {"id": 1}}),
        Reason.BAD_TYPE,
        "data.user_id",
        id="distinct-value-object",
    ),
    # bad_specversion
    pytest.param(payload(specversion="0.3"), Reason.BAD_SPECVERSION, "specversion", id="0.3"),
    pytest.param(payload(specversion="1"), Reason.BAD_SPECVERSION, "specversion", id="1"),
    # bad_time
    pytest.param(payload(time="2026-03-01T12:00:00"), Reason.BAD_TIME, "time", id="no-offset"),
    pytest.param(payload(time="2026-03-01"), Reason.BAD_TIME, "time", id="date-only"),
    pytest.param(payload(time="yesterday"), Reason.BAD_TIME, "time", id="words"),
    pytest.param(payload(time="2026-02-30T00:00:00Z"), Reason.BAD_TIME, "time", id="feb-30"),
    pytest.param(
        payload(time="1999-12-31T23:59:59.999Z"), Reason.BAD_TIME, "time", id="before-2000"
    ),
    # future_time: the clock is NOW_MS (2026-06-01T00:00:00Z), skew 5 minutes
    pytest.param(payload(time="2026-06-01T00:05:00.001Z"), Reason.FUTURE_TIME, "time", id="future"),
    # missing_value
    pytest.param(payload(data=data()), Reason.MISSING_VALUE, "data.tokens", id="absent"),
    pytest.param(payload(data=data(tokens=None)), Reason.MISSING_VALUE, "data.tokens", id="null"),
    # bad_value
    pytest.param(payload(data=data(tokens="12abc")), Reason.BAD_VALUE, "data.tokens", id="text"),
    pytest.param(payload(data=data(tokens="")), Reason.BAD_VALUE, "data.tokens", id="empty"),
    pytest.param(
        payload(data=data(tokens="0.0000000001")), Reason.BAD_VALUE, "data.tokens", id="10-str"
    ),
    pytest.param(
        with_tokens_literal(b"1.0000000001"), Reason.BAD_VALUE, "data.tokens", id="10-num"
    ),
    # negative_value
    pytest.param(payload(data=data(tokens=-1)), Reason.NEGATIVE_VALUE, "data.tokens", id="-1"),
    pytest.param(
        payload(data=data(tokens="-0.5")), Reason.NEGATIVE_VALUE, "data.tokens", id="-0.5str"
    ),
    # non_finite_value spelled as strings: the field is known
    pytest.param(
        payload(data=data(tokens="NaN")), Reason.NON_FINITE_VALUE, "data.tokens", id="NaN-str"
    ),
    pytest.param(
        payload(data=data(tokens="Infinity")),
        Reason.NON_FINITE_VALUE,
        "data.tokens",
        id="Infinity-str",
    ),
    # value_out_of_range
    pytest.param(
        payload(data=data(tokens=10**18)), Reason.VALUE_OUT_OF_RANGE, "data.tokens", id="1e18"
    ),
    pytest.param(
        payload(data=data(tokens="1E+18")),
        Reason.VALUE_OUT_OF_RANGE,
        "data.tokens",
        id="1e18-str",
    ),
    pytest.param(
        with_tokens_literal(b"100000000000000000000000"),
        Reason.VALUE_OUT_OF_RANGE,
        "data.tokens",
        id="beyond-64-bits",
    ),
    # Exponents no Decimal holds: a rejection, not an exception out of the parser.
    pytest.param(
        payload(data=data(tokens="1e999999999999999999999")),
        Reason.VALUE_OUT_OF_RANGE,
        "data.tokens",
        id="huge-exponent-str",
    ),
    pytest.param(
        payload(data=data(tokens="1e-999999999999999999999")),
        Reason.VALUE_OUT_OF_RANGE,
        "data.tokens",
        id="tiny-exponent-str",
    ),
    # too_large
    pytest.param(
        payload(data=data(tokens=1, pad="x" * MAX_EVENT_BYTES)),
        Reason.TOO_LARGE,
        "bytes",
        id="payload",
    ),
    pytest.param(payload(id="i" * 257), Reason.TOO_LARGE, "id", id="long-id"),
    pytest.param(payload(source="s" * 257), Reason.TOO_LARGE, "source", id="long-source"),
    pytest.param(
        payload(data=data(tokens=1, model="m" * 257)), Reason.TOO_LARGE, "data.model", id="group"
    ),
    # unknown_event_type / unknown_subject
    pytest.param(payload(type="llm.other"), Reason.UNKNOWN_EVENT_TYPE, "type", id="type"),
    pytest.param(payload(subject="initech"), Reason.UNKNOWN_SUBJECT, "subject", id="subject"),
]


@pytest.mark.parametrize(("data_bytes", "reason", "field"), REJECTIONS)
def test_rejection_reason_and_detail(data_bytes: bytes, reason: Reason, field: str) -> None:
    rejection = reject(data_bytes)

    assert rejection.reason is reason
    assert field in rejection.detail


@pytest.mark.parametrize(
    ("literal", "mentions"),
    [
        (b"NaN", "NaN"),
        (b"Infinity", "Infinity"),
        (b"-Infinity", "Infinity"),
        (b"1e400", "infinity"),
        (b"-1e400", "infinity"),
    ],
)
def test_non_finite_number_literals(literal: bytes, mentions: str) -> None:
    # orjson refuses these before any field is read, so the detail names the value only.
    rejection = reject(with_tokens_literal(literal))

    assert rejection.reason is Reason.NON_FINITE_VALUE
    assert mentions in rejection.detail


def test_limits_are_inclusive_at_the_edge() -> None:
    accept_one(payload(id="i" * 256))
    accept_one(payload(time="2000-01-01T00:00:00Z"))
    accept_one(payload(time="2026-06-01T00:05:00Z"))  # exactly now + skew
    accept_one(payload(data=data(tokens="999999999999999999.999999999")))
    fits = payload(data=data(tokens=1, pad=""))
    padded = payload(data=data(tokens=1, pad="x" * (MAX_EVENT_BYTES - len(fits))))
    assert len(padded) == MAX_EVENT_BYTES
    accept_one(padded)


def test_before_2000_detail_says_so() -> None:
    rejection = reject(payload(time="1999-12-31T23:59:59.999Z"))

    assert "before 2000" in rejection.detail


def test_times_from_2200_are_refused_whatever_the_future_skew() -> None:
    # A skew of centuries is a configuration mistake; one event must still not be able
    # to reach the year 10000 (its billing period) or overflow ClickHouse's DateTime64.
    lenient = BatchParser(
        ParserConfig(
            meters=build_meter_catalog(),
            known_tenant=KNOWN_TENANTS.__contains__,
            max_future_skew_ms=10**16,
        )
    )
    texts = ("2199-12-31T23:59:59.999Z", "2200-01-01T00:00:00Z", "9999-12-31T23:59:59Z")
    parsed = lenient.parse(
        [raw_message(payload(time=t), offset=i) for i, t in enumerate(texts)], now_ms=NOW_MS
    )

    assert [e.message.offset for e in parsed.events] == [0]
    assert [r.reason for r in parsed.rejections] == [Reason.FUTURE_TIME] * 2
    assert "not before 2200-01-01" in parsed.rejections[0].detail


def test_event_matching_two_meters_yields_a_measure_for_each() -> None:
    event = accept_one(payload())

    assert event.tenant == "acme"
    assert event.source == "gateway"
    assert event.id == "evt-1"
    assert event.type == "llm.completion"
    assert event.time_ms == EVENT_TIME_MS
    assert event.idempotency_key == "4:acme7:gatewayevt-1"
    assert event.measures == (
        Measure("tokens", Decimal(1500), (("model", "gpt"), ("region", "eu"))),
        Measure("completions", None, ()),
    )


@pytest.mark.parametrize(
    ("event_type", "values", "measure"),
    [
        ("storage.snapshot", {"gb": 12.5}, Measure("storage_gb", Decimal("12.5"), ())),
        ("seats.snapshot", {"seats": "40"}, Measure("seats", Decimal(40), ())),
        ("api.request", {"user_id": "u-7"}, Measure("active_users", "u-7", ())),
        ("api.request", {"user_id": 7}, Measure("active_users", "7", ())),
        ("api.request", {"user_id": True}, Measure("active_users", "true", ())),
    ],
)
def test_measure_per_aggregation(event_type: str, values: dict[str, Any], measure: Measure) -> None:
    event = accept_one(payload(type=event_type, data=values))

    assert event.measures == (measure,)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ("1500.5", "1500.5"),
        (" 42 ", "42"),
        ("0.000000001", "0.000000001"),
        ("2.500000000000", "2.5"),  # trailing zeros beyond 9 places are not precision
        (0.1, "0.1"),
        (0.3, "0.3"),
        (1.5e-5, "0.000015"),
        (0, "0"),
    ],
)
def test_values_are_exact_decimals(tokens: Any, expected: str) -> None:
    event = accept_one(payload(data=data(tokens=tokens)))

    value = event.measures[0].value
    assert isinstance(value, Decimal)
    assert value == Decimal(expected)
    assert str(value) == str(Decimal(expected))


@given(
    st.decimals(
        min_value=0,
        max_value=Decimal("999999999999999999.999999999"),
        places=9,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_numeric_strings_within_limits_round_trip_exactly(value: Decimal) -> None:
    event = accept_one(payload(data=data(tokens=str(value))))

    assert event.measures[0].value == value


def test_json_number_with_more_digits_than_a_double_is_not_rounded() -> None:
    # 19 significant digits, 9 fractional: within every limit, yet a double holds ~16.
    event = parse(with_tokens_literal(b"1234567890.123456789"))

    if event.rejections:
        assert event.rejections[0].reason is Reason.BAD_VALUE
    else:
        assert event.events[0].measures[0].value == Decimal("1234567890.123456789")


def test_json_number_with_too_many_fractional_digits_is_rejected() -> None:
    rejection = reject(with_tokens_literal(b"1.00000000000000001"))

    assert rejection.reason is Reason.BAD_VALUE
    assert "data.tokens" in rejection.detail


def test_json_number_that_underflows_is_rejected_not_zero() -> None:
    rejection = reject(with_tokens_literal(b"1e-400"))

    assert rejection.reason is Reason.BAD_VALUE


def test_long_numeric_string_with_too_many_fractional_digits_is_not_rounded() -> None:
    # 31 significant digits: a 28-digit normalize() would round the tail away.
    rejection = reject(payload(data=data(tokens="100000000000000000.0000000000499")))

    assert rejection.reason is Reason.BAD_VALUE


@pytest.mark.parametrize(
    "data_bytes",
    [
        pytest.param(payload(data=data(tokens="0." + "1" * 80)), id="string"),
        pytest.param(with_tokens_literal(b"0." + b"1" * 80), id="number"),
    ],
)
def test_value_with_more_than_76_digits_is_a_rejection_not_a_crash(data_bytes: bytes) -> None:
    rejection = reject(data_bytes)

    assert rejection.reason is Reason.BAD_VALUE
    assert "data.tokens" in rejection.detail


def test_deeply_nested_event_with_a_fractional_value_is_not_a_crash() -> None:
    # orjson accepts nesting to depth 1024; the standard library gives up near 1000.
    deep = b"[" * 1_010 + b"]" * 1_010
    nested = payload(data=data(tokens=0, junk=0)).replace(b'"tokens":0', b'"tokens":1.5')
    nested = nested.replace(b'"junk":0', b'"junk":' + deep)

    parsed = parse(nested)

    assert len(parsed.events) + len(parsed.rejections) == 1
    if parsed.events:
        assert parsed.events[0].measures[0].value == Decimal("1.5")


@pytest.mark.parametrize("tokens", [1, 1.5])
def test_fractional_value_does_not_change_how_group_values_are_read(tokens: Any) -> None:
    event = accept_one(payload(data={"tokens": tokens, "model": 4, "region": 2.5}))

    assert event.measures[0].groups == (("model", "4"), ("region", "2.5"))


@pytest.mark.parametrize(
    ("values", "groups"),
    [
        ({"model": "gpt", "region": "eu"}, (("model", "gpt"), ("region", "eu"))),
        ({"model": "gpt"}, (("model", "gpt"), ("region", ""))),
        ({"model": "gpt", "region": None}, (("model", "gpt"), ("region", ""))),
        ({}, (("model", ""), ("region", ""))),
        ({"model": True, "region": False}, (("model", "true"), ("region", "false"))),
        ({"model": 4, "region": 2.5}, (("model", "4"), ("region", "2.5"))),
    ],
)
def test_group_values_are_canonical(values: dict[str, Any], groups: tuple[Any, ...]) -> None:
    event = accept_one(payload(data={"tokens": 1, **values}))

    assert event.measures[0].groups == groups


def test_rejection_keeps_payload_coordinates_and_envelope() -> None:
    bad = payload(id="evt-9", source="batcher", subject="acme", data=data(tokens=-3))
    message = RawMessage(payload=bad, origin="usage-events", partition=5, offset=1234)

    parsed = PARSER.parse([message], now_ms=NOW_MS)

    assert parsed.rejections == [
        Rejection(
            reason=Reason.NEGATIVE_VALUE,
            detail=parsed.rejections[0].detail,
            payload=bad,
            origin="usage-events",
            partition=5,
            offset=1234,
            rejected_at_ms=NOW_MS,
            event_id="evt-9",
            event_source="batcher",
            tenant="acme",
        )
    ]


def test_rejection_of_unreadable_payload_keeps_its_exact_bytes() -> None:
    broken = b'{"id": "evt-1", \xff'

    rejection = reject(broken)

    assert rejection.payload == broken
    assert (rejection.event_id, rejection.event_source, rejection.tenant) == ("", "", "")


def test_accepted_event_keeps_its_message() -> None:
    message = RawMessage(payload=payload(), origin="usage-events", partition=3, offset=77)

    parsed = PARSER.parse([message], now_ms=NOW_MS)

    assert parsed.events[0].message == message


def test_batch_counts_reconcile_and_order_is_kept() -> None:
    batch = [
        payload(id="a"),
        b"not json",
        payload(id="b", time="2026-03-01T12:00:07Z"),
        payload(id="c", subject="initech"),
        payload(id="d", data=data(tokens="1.5")),
        payload(id="e", type="nope"),
    ]

    parsed = parse(*batch)

    assert len(parsed.events) + len(parsed.rejections) == len(batch)
    assert [e.id for e in parsed.events] == ["a", "b", "d"]
    assert [e.message.offset for e in parsed.events] == [0, 2, 4]
    assert [r.offset for r in parsed.rejections] == [1, 3, 5]
    assert [r.reason for r in parsed.rejections] == [
        Reason.MALFORMED_JSON,
        Reason.UNKNOWN_SUBJECT,
        Reason.UNKNOWN_EVENT_TYPE,
    ]


def test_max_time_is_the_latest_accepted_time() -> None:
    parsed = parse(
        payload(id="a", time="2026-03-01T12:00:01Z"),
        payload(id="b", time="2026-03-01T12:00:09.999Z"),
        payload(id="c", time="2026-03-01T12:00:05Z"),
        # Later, but rejected: must not move max_time.
        payload(id="d", time="2026-05-01T00:00:00Z", subject="initech"),
    )

    assert parsed.max_time_ms == EVENT_TIME_MS - 250 + 9_999


def test_max_time_is_none_when_nothing_is_accepted() -> None:
    assert parse(b"[]", payload(type="nope")).max_time_ms is None
    assert parse().max_time_ms is None


def test_offsets_in_the_time_are_applied() -> None:
    utc = accept_one(payload(time="2026-03-01T12:00:00Z")).time_ms
    shifted = accept_one(payload(time="2026-03-01T14:00:00+02:00")).time_ms

    assert utc == shifted == EVENT_TIME_MS - 250


def test_same_tenant_lookup_is_asked_once() -> None:
    asked: list[str] = []

    def known(tenant: str) -> bool:
        asked.append(tenant)
        return tenant == "acme"

    parser = BatchParser(ParserConfig(meters=build_meter_catalog(), known_tenant=known))
    messages = [raw_message(payload(id=str(i)), offset=i) for i in range(5)]

    parsed = parser.parse(messages, now_ms=NOW_MS)

    assert len(parsed.events) == 5
    assert asked == ["acme"]


def with_literals(event_type: str, **literals: bytes) -> bytes:
    """A valid event of ``event_type`` whose ``data`` holds the raw JSON texts ``literals``."""
    doc = payload(type=event_type, data={name: f"@{name}@" for name in literals})
    for name, literal in literals.items():
        doc = doc.replace(f'"@{name}@"'.encode(), literal)
    return doc


def unique_value(literal: bytes) -> Any:
    return accept_one(with_literals("api.request", user_id=literal)).measures[0].value


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (b"18446744073709551617", b"18446744073709551618"),  # beyond 64 bits
        (b"0.30000000000000001", b"0.3"),  # the same double
        (b"1.0", b"1"),  # equal numbers, different texts
        (b"-0", b"0"),
    ],
)
def test_distinct_number_texts_are_distinct_unique_values(first: bytes, second: bytes) -> None:
    users = UniqueCountAccumulator()
    for literal in (first, second, first):
        users.fold(unique_value(literal), EVENT_TIME_MS)

    assert users.quantity() == 2
    assert users.values == {first.decode(), second.decode()}


@pytest.mark.parametrize(
    "literal",
    [
        b"123456789012345678901234",
        b"-9223372036854775809",
        b"18446744073709551615",
        b"0.30000000000000001",
        b"1e2",
        b"1E+2",
        b"2.50",
        b"-0.0",
        b"-0",
        b"7",
    ],
)
def test_number_values_keep_their_json_text(literal: bytes) -> None:
    event = accept_one(with_literals("llm.completion", tokens=b"1", model=literal, region=b"1.5"))

    assert event.measures[0].groups == (("model", literal.decode()), ("region", "1.5"))
    assert unique_value(literal) == literal.decode()
    # Window state and snapshots hold ordinary strings.
    assert {type(value) for _, value in event.measures[0].groups} == {str}
    assert type(unique_value(literal)) is str


@given(st.integers(min_value=-(10**200), max_value=10**200))
def test_any_integer_keeps_its_digits(number: int) -> None:
    assert unique_value(str(number).encode()) == str(number)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_double_written_with_17_digits_keeps_its_text(number: float) -> None:
    text = f"{number:.16e}"
    assert unique_value(text.encode()) == text


def test_number_text_longer_than_the_group_limit_is_too_large() -> None:
    rejection = reject(with_literals("llm.completion", tokens=b"1", model=b"1" * 257))

    assert rejection.reason is Reason.TOO_LARGE
    assert "data.model" in rejection.detail
