"""The native core against its specification, operators/parse.py.

Both parsers get the same batches, random and hostile, and must agree on
every accepted event (tenant, source, id, type, time, each measure's exact
value and group values), on every rejection (reason, detail, the envelope it
names) and on the idempotency key. Details of malformed JSON name a parser's
position in its own words, so only their reason is compared.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.meter_catalog import load_meter_catalog
from config.meters import Aggregation, MeterCatalog, MeterDefinition
from config.pricing_catalog import load_pricing_catalog
from operators._native import idempotency_hash
from operators.jsonpath import compile_path
from operators.model import RawMessage, Reason, Rejection
from operators.native_parse import NativeParser, known_tenants
from operators.parse import BatchParser, ParserConfig
from tests.dataflows.conftest import METERS_YAML, PRICING_YAML
from tests.dataflows.hostile_corpus import MAX_EVENT_BYTES, build_corpus
from tests.dataflows.scenario import BASE_MS
from tests.operators.conftest import KNOWN_TENANTS, NOW_MS, build_meter_catalog

T = TypeVar("T")
MAX_BYTES = 4_096
SKEW_MS = 300_000


def catalog() -> MeterCatalog:
    """The operator tests' catalog (every aggregation) and paths with quoted keys and indexes."""
    nested = (
        MeterDefinition(
            slug="nested_input",
            event_type="nested.usage",
            aggregation=Aggregation.SUM,
            value_path=compile_path("$.usage['input tokens']"),
            group_by=(
                ("first", compile_path("$.items[0]")),
                ("deep", compile_path("$.usage.region")),
            ),
        ),
        MeterDefinition(
            slug="nested_users",
            event_type="nested.usage",
            aggregation=Aggregation.UNIQUE_COUNT,
            value_path=compile_path("$.items[1]"),
            group_by=(("model", compile_path("$.model")),),
        ),
    )
    return MeterCatalog.of(build_meter_catalog().meters + nested)


CATALOG = catalog()
SPEC = BatchParser(
    ParserConfig(
        meters=CATALOG,
        known_tenant=KNOWN_TENANTS.__contains__,
        max_event_bytes=MAX_BYTES,
        max_future_skew_ms=SKEW_MS,
    )
)
NATIVE = NativeParser(CATALOG, KNOWN_TENANTS, MAX_BYTES, SKEW_MS)


def comparable(rejection: Rejection) -> tuple[Any, ...]:
    detail = None if rejection.reason is Reason.MALFORMED_JSON else rejection.detail
    return (
        rejection.offset,
        rejection.reason,
        detail,
        rejection.event_id,
        rejection.event_source,
        rejection.tenant,
        rejection.payload,
    )


def assert_same(
    payloads: list[bytes],
    spec: BatchParser = SPEC,
    native: NativeParser = NATIVE,
    now_ms: int = NOW_MS,
) -> None:
    batch = [RawMessage(p, "usage", 3, offset) for offset, p in enumerate(payloads)]

    expected = spec.parse(batch, now_ms)
    got = native.parse(batch, now_ms)

    assert [comparable(r) for r in got.rejections] == [comparable(r) for r in expected.rejections]
    assert got.events == expected.events
    for mine, theirs in zip(got.events, expected.events, strict=True):
        for a, b in zip(mine.measures, theirs.measures, strict=True):
            # Decimal equality ignores the exponent; the quantity must be the same number.
            assert str(a.value) == str(b.value) or a.value == b.value
    assert got.max_time_ms == expected.max_time_ms
    hashes = native.columns(payloads, now_ms).key_hash
    assert [hashes[16 * i : 16 * i + 16] for i in range(len(got.events))] == [
        idempotency_hash(e.idempotency_key) for e in expected.events
    ]


# -- strategies: JSON text built piece by piece, so every literal is sent as written

NUMBER_LITERALS = [
    "0", "-0", "-0.0", "7", "-1", "1500", "12.5", "0.1", "0.3", "0.30000000000000001",
    "1e3", "2.5E+3", "1E2", "1.5e-5", "1e-10", "1e-400", "1e19", "1e400", "-1e400",
    "100e-11", "1.500000000000", "1.0000000001", "999999999999999999",
    "999999999999999999.999999999", "1000000000000000000", "18446744073709551615",
    "18446744073709551616", "-9223372036854775808", "-9223372036854775809",
    "100000000000000000000000", "1.7976931348623157e308", "1.8e308", "0." + "1" * 80,
    "1234567890.123456789", "NaN", "Infinity", "-Infinity", "1" * 300, "0." + "3" * 300,
    # Exponents at and beyond what a Python Decimal holds (orjson reads the small ones as 0.0).
    "1e-999999999999999999999", "0e999999999999999999999", "-0e-999999999999999999999",
    "1e999999999999999999", "1e-1999999999999999997", "1e-1999999999999999998",
    "0e-1999999999999999998", "1.5e-99999999999999999999999999999",
]  # fmt: skip
NUMERIC_TEXTS = [
    " 42 ", "\t7\n", "12abc", "", "0x10", "1_000", "\u0661\u0662", "+5", "5.", ".5", "-5",
    "-0.5", "1.5e3", "1e400", "1e18", "nan", "NaN", "-Infinity", "inf", "sNaN", "\u017fnan",
    "\u0130nf", "0.0000000001", "0.000000001", "2.500000000000", "1E+18", " ", "1e", "--1",
    "100000000000000000.0000000000499", "1e999999999999999999999", " 1e-999999999999999999999 ",
    "0e1000000000000000000", "1e999999999999999999", "-1e999999999999999999",
    "10e999999999999999999", "1e-1999999999999999997", "0.0e-1999999999999999996",
    "1E-1999999999999999998", "-1e-1500000000000000000",
]  # fmt: skip

number_literal = st.one_of(
    st.sampled_from(NUMBER_LITERALS),
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.builds(
        lambda digits, point, exp: (
            digits[:point] + ("." + digits[point:] if point < len(digits) else "") + exp
        ),
        st.text("0123456789", min_size=1, max_size=30).filter(
            lambda d: d == "0" or not d.startswith("0")
        ),
        st.integers(1, 30),
        st.one_of(
            st.sampled_from(["", "e5", "E-3", "e+2", "e-12", "e20"]),
            # Exponents near, at and beyond the limits of Python's Decimal.
            st.builds(
                lambda e, sign, limit: f"{e}{sign}{limit}",
                st.sampled_from(["e", "E"]),
                st.sampled_from(["", "+", "-"]),
                st.sampled_from([10**18, 2 * 10**18, 10**21]).flatmap(
                    lambda limit: st.integers(limit - 40, limit + 5)
                ),
            ),
        ),
    ),
)


def text_json(text: str, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)


any_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=260),
    st.sampled_from(["gpt", "eu", "u-7", "acme", "globex", "", "m" * 257, "'\"\\"]),
)
string_literal = st.builds(text_json, any_text, st.booleans())
short_string = st.builds(text_json, st.text(max_size=12), st.booleans())
numeric_string = st.builds(
    text_json, st.one_of(st.sampled_from(NUMERIC_TEXTS), number_literal), st.booleans()
)


def mostly(
    good: st.SearchStrategy[T], bad: st.SearchStrategy[T], bad_percent: int = 15
) -> st.SearchStrategy[T]:
    """``good`` mostly: random batches must reach the later checks too."""
    return st.integers(0, 99).flatmap(lambda n: bad if n < bad_percent else good)


plain_quantity = st.one_of(
    st.integers(0, 10**15).map(str),
    st.decimals(min_value=0, max_value=10**17, places=9, allow_nan=False).map(str),
    st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False).map(
        lambda d: json.dumps(str(d))
    ),
)
quantity_literal = mostly(plain_quantity, st.one_of(number_literal, numeric_string))
scalar_literal = st.one_of(
    number_literal,
    string_literal,
    numeric_string,
    st.sampled_from(["true", "false", "null", "[]", "{}", "[1]", '{"n": 1}', '["a", 2]']),
)


@st.composite
def json_object(draw: st.DrawFn, members: list[tuple[str, str]]) -> str:
    """Members as given (keys JSON-quoted here), joined with random but valid spacing."""
    colon = draw(st.sampled_from([":", ": ", " : ", "\t:"]))
    comma = draw(st.sampled_from([",", ", ", ",\n  "]))
    parts = [f"{json.dumps(k, ensure_ascii=draw(st.booleans()))}{colon}{v}" for k, v in members]
    return "{" + comma.join(parts) + "}"


@st.composite
def data_object(draw: st.DrawFn) -> str:
    keys = ["tokens", "model", "region", "user_id", "gb", "seats", "usage", "items", "junk"]
    chosen = [k for k in keys if draw(st.integers(1, 10)) <= (1 if k == "junk" else 9)]
    chosen = draw(st.permutations(chosen))
    members = []
    group = mostly(mostly(short_string, number_literal), scalar_literal)
    for key in chosen:
        if key in ("tokens", "gb", "seats"):
            value = draw(quantity_literal)
        elif key in ("model", "region", "user_id"):
            value = draw(group)
        elif key == "usage":
            inner = [("input tokens", draw(quantity_literal)), ("region", draw(group))]
            value = draw(json_object(draw(st.permutations(inner))))
        elif key == "items":
            value = "[" + ", ".join(draw(st.lists(group, max_size=3))) + "]"
        elif key == "junk":
            depth = draw(st.sampled_from([1, 5, 126, 127, 128, 129, 1100]))
            value = "[" * depth + draw(scalar_literal) + "]" * depth
        members.append((key, value))
    if members and draw(st.integers(1, 30)) == 30:
        members.append((members[0][0], draw(scalar_literal)))  # a repeated key
    return draw(json_object(members))


@st.composite
def good_time(draw: st.DrawFn) -> str:
    moment = draw(st.integers(946_684_800_000, NOW_MS + SKEW_MS))
    stamp = datetime.fromtimestamp(moment / 1000, UTC).isoformat(timespec="milliseconds")
    return json.dumps(stamp.replace("+00:00", draw(st.sampled_from(["Z", "+00:00"]))))


@st.composite
def event_time(draw: st.DrawFn) -> str:
    now = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    moment = draw(
        st.one_of(
            st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 6, 1, 0, 10)),
            st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
            st.just((now + timedelta(minutes=5)).replace(tzinfo=None)),
        )
    )
    sep = draw(st.sampled_from(["T", "t", " ", "_"]))
    digits = draw(st.integers(0, 10))
    fraction = "" if not digits else "." + f"{moment.microsecond:06d}000000"[:digits]
    zone = draw(
        st.sampled_from(["Z", "z", "+00:00", "+05:30", "-08:00", "+24:00", "-00:60", "", "+0530"])
    )
    text = moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction + zone
    broken = draw(st.sampled_from(["", "", "", "day", "second", "month", "newline", "words"]))
    if broken == "day":
        text = text[:8] + "31" + text[10:]
    elif broken == "second":
        text = text[:17] + "60" + text[19:]
    elif broken == "month":
        text = text[:5] + "00" + text[7:]
    elif broken == "newline":
        text += "\n"
    elif broken == "words":
        text = draw(st.text(max_size=30))
    return text_json(text, draw(st.booleans()))


def attribute(good: list[str]) -> st.SearchStrategy[str]:
    return mostly(st.sampled_from(good).map(json.dumps), scalar_literal, bad_percent=4)


@st.composite
def cloud_event(draw: st.DrawFn) -> bytes:
    members = [
        ("specversion", draw(mostly(st.just('"1.0"'), scalar_literal, bad_percent=4))),
        ("id", draw(attribute(["evt-1", "evt-2", "evt-3", "i" * 256, "🧾" * 256]))),
        ("source", draw(attribute(["gateway", "batcher"]))),
        (
            "type",
            draw(
                attribute(
                    [
                        "llm.completion",
                        "storage.snapshot",
                        "api.request",
                        "seats.snapshot",
                        "nested.usage",
                        "llm.other",
                    ]
                )
            ),
        ),
        ("subject", draw(attribute(["acme", "globex", "acme", "globex", "initech"]))),
        ("time", draw(mostly(good_time(), st.one_of(event_time(), scalar_literal)))),
        ("data", draw(mostly(data_object(), scalar_literal, bad_percent=4))),
        ("traceparent", '"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"'),
    ]
    kept = [m for m in members if draw(st.integers(1, 40)) != 40]
    if kept and draw(st.integers(1, 30)) == 30:
        kept.append((draw(st.sampled_from(kept))[0], draw(scalar_literal)))
    text = draw(json_object(draw(st.permutations(kept))))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """A valid-looking event broken the way senders and attackers break them."""
    payload = draw(cloud_event())
    how = draw(
        st.sampled_from(
            [
                "truncate", "byte", "bom", "array", "garbage", "utf16", "nan",
                "comment", "pad", "binary", "surrogate", "control",
            ]
        )
    )  # fmt: skip
    at = draw(st.integers(0, max(len(payload) - 1, 0)))
    if how == "truncate":
        return payload[:at]
    if how == "byte":
        return payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1 :]
    if how == "bom":
        return b"\xef\xbb\xbf" + payload
    if how == "array":
        return b"[" + payload + b"]"
    if how == "garbage":
        return payload + draw(st.sampled_from([b" x", b",", b"\n{}", b"\x00"]))
    if how == "utf16":
        return payload.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
    if how == "nan":
        return payload.replace(b'"tokens":', b'"tokens": NaN, "t":', 1)
    if how == "comment":
        return b"/* usage */ " + payload
    if how == "pad":
        return payload[:-1] + b', "pad": "' + b"x" * draw(st.integers(3_900, 4_200)) + b'"}'
    if how == "surrogate":
        return payload.replace(b'"acme"', b'"ac\\ud800me"').replace(b'"gpt"', b'"\xed\xa0\x80"')
    if how == "control":
        return payload.replace(b'"gateway"', b'"gate\x01way"')
    return draw(st.binary(max_size=64))


events = mostly(cloud_event(), hostile())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=8))
def test_random_and_hostile_batches_get_the_same_verdicts(payloads: list[bytes]) -> None:
    assert_same(payloads)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cloud_event())
def test_each_event_alone_gets_the_same_verdict(payload: bytes) -> None:
    assert_same([payload])


@pytest.mark.parametrize(
    "literal",
    NUMBER_LITERALS + [json.dumps(t) for t in NUMERIC_TEXTS],
)
@pytest.mark.parametrize("event_type", ["llm.completion", "api.request", "nested.usage"])
def test_every_number_spelling_gets_the_same_value_or_reason(literal: str, event_type: str) -> None:
    data = (
        f'{{"tokens": {literal}, "model": {literal}, "user_id": {literal}, '
        f'"items": [{literal}, {literal}], "usage": {{"input tokens": 1.5, "region": {literal}}}}}'
    )
    envelope = json.dumps(
        {"specversion": "1.0", "id": "e", "source": "s", "type": event_type, "subject": "acme"}
    )
    payload = f'{envelope[:-1]}, "time": "2026-03-01T12:00:00Z", "data": {data}}}'.encode()
    assert_same([payload])


@pytest.mark.parametrize(
    "stamp",
    ["2199-12-31T23:59:59.999Z", "2200-01-01T00:00:00Z", "2200-01-01T05:00:00+05:00"],
)
def test_times_from_2200_are_refused_whatever_the_clock(stamp: str) -> None:
    envelope = json.dumps(
        {"specversion": "1.0", "id": "e", "source": "s", "type": "llm.completion"}
        | {"subject": "acme", "time": stamp, "data": {"tokens": 1}}
    )
    far_future_ms = int(datetime(2300, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert_same([envelope.encode()], now_ms=far_future_ms)


# -- the hostile corpus (tests/dataflows/hostile_corpus.py), through both parsers


@pytest.fixture(scope="module")
def corpus_parsers(tmp_path_factory: pytest.TempPathFactory) -> tuple[BatchParser, NativeParser]:
    folder: Path = tmp_path_factory.mktemp("native-corpus")
    (folder / "meters.yaml").write_text(METERS_YAML)
    (folder / "pricing.yaml").write_text(PRICING_YAML)
    meters = load_meter_catalog(folder / "meters.yaml")
    pricing = load_pricing_catalog(folder / "pricing.yaml", meters)
    spec = BatchParser(
        ParserConfig(meters=meters, known_tenant=pricing.knows, max_event_bytes=MAX_EVENT_BYTES)
    )
    native = NativeParser(meters, known_tenants(pricing), max_event_bytes=MAX_EVENT_BYTES)
    return spec, native


# The corpus's wall clock: a day after the scenario, so its times are not in the future.
CORPUS_NOW_MS = BASE_MS + 86_400_000
CORPUS = build_corpus(CORPUS_NOW_MS)


def test_the_hostile_corpus_gets_the_same_verdicts(
    corpus_parsers: tuple[BatchParser, NativeParser],
) -> None:
    assert len(CORPUS) >= 100
    spec, native = corpus_parsers
    assert_same([entry.payload for entry in CORPUS], spec, native, CORPUS_NOW_MS)


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_each_hostile_entry_alone_gets_the_same_verdict(
    corpus_parsers: tuple[BatchParser, NativeParser], entry: Any
) -> None:
    spec, native = corpus_parsers
    assert_same([entry.payload], spec, native, CORPUS_NOW_MS)
