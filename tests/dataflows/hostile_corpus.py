"""A corpus of malformed, hostile and merely weird events, each with the reason it must get.

Every entry is built around one valid ``llm.completion`` event for the test
catalogs (tests/dataflows/conftest.py), timed five minutes into the scenario
(``tests.dataflows.scenario.BASE_MS``) so that it is not late when mixed into
``build_scenario()`` lines. The expected reasons are read off the event
contract in README.md, not off the parser: an entry whose reason the parser
gets wrong is a product bug, and the tests that use this corpus say so.

``reason`` None means the event is valid and must be accepted;
``ACCEPTED_TOKENS`` says, written out by hand, what each such event adds.
``Reason.TOO_LATE`` is decided by the windowing stage, not by the parser:
the parser must accept that entry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from operators.model import Reason
from tests.dataflows.scenario import BASE_MS, MINUTE


class Hostile(NamedTuple):
    """One corpus entry: a name, the exact message bytes, and the reason it must get."""

    name: str
    payload: bytes
    reason: Reason | None


SOURCE = "tests/hostile"
EVENT_MS = BASE_MS + 5 * MINUTE + 500  # 2026-10-31T23:35:00.500Z, before the price change
MAX_EVENT_BYTES = 65_536  # flow.max_event_bytes, the default the flows under test use
SQL_SUBJECT = "acme'; DROP TABLE rated_windows; --"
SQL_GROUP = "m0'); DROP TABLE rated_windows; DROP TABLE rated_windows_local; --"
QUOTES_GROUP = "he said \"hi\" \\ C:\\temp\\ `tick` 'single'"
CONTROL_GROUP = "nul\x00tab\tbell\x07us\x1fdel\x7f"
UNICODE_TENANT = "ünïcødé-Ωmega-租户"
EMOJI_GROUP = "🚀✨ model 👩‍💻"

# Tenant and tokens each accepted entry adds, spelled independently of the parser.
ACCEPTED_TOKENS: dict[str, tuple[str, Decimal]] = {
    "unicode-tenant": (UNICODE_TENANT, Decimal(11)),
    "emoji-group-value": ("globex", Decimal(12)),
    "numeric-string-with-spaces": ("globex", Decimal(42)),
    "exponent-string": ("globex", Decimal(1500)),
    "exponent-number": ("globex", Decimal(2500)),
    "trailing-zero-fraction-beyond-9-digits": ("globex", Decimal("1.5")),
    "nine-fractional-digits": ("globex", Decimal("0.000000001")),
    "largest-value-below-1e18": ("globex", Decimal(10**18 - 1)),
    "zero-value": ("globex", Decimal(0)),
    "sql-in-subject": (SQL_SUBJECT, Decimal(13)),
    "sql-in-group-value": ("globex", Decimal(14)),
    "quotes-and-backslashes-in-group-value": ("globex", Decimal(15)),
    "escaped-control-chars-in-group-value": ("globex", Decimal(16)),
    "number-as-group-value": ("globex", Decimal(17)),
    "missing-group-value": ("globex", Decimal(18)),
    "nested-100-levels-in-unrelated-property": ("globex", Decimal(19)),
    "id-exactly-256-chars": ("globex", Decimal(20)),
    "id-256-emoji-chars": ("globex", Decimal(21)),
    "exactly-max-event-bytes": ("globex", Decimal(22)),
    "nanosecond-lowercase-time": ("globex", Decimal(23)),
    "time-with-half-hour-offset": ("globex", Decimal(24)),
    "extension-attributes": ("acme", Decimal(25)),
    "escaped-unicode-in-subject": ("globex", Decimal(26)),
    "whitespace-around-tokens": ("globex", Decimal(27)),
}

# A placeholder string whose quoted form is swapped for raw bytes.
_RAW = "@@raw@@"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _doc(name: str, **overrides: Any) -> dict[str, Any]:
    """The base event (id ``hostile-<name>``); an override of ``...`` removes the key."""
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"hostile-{name}",
        "source": SOURCE,
        "type": "llm.completion",
        "subject": "globex",
        "time": _iso(EVENT_MS),
        "data": {"tokens": 7, "model": "m0"},
    }
    doc.update(overrides)
    return {key: value for key, value in doc.items() if value is not ...}


def _bytes(doc: Any) -> bytes:
    # Raw UTF-8, not \u escapes: the unicode entries must reach the parser as sent.
    return json.dumps(doc, ensure_ascii=False).encode()


def _event(name: str, **overrides: Any) -> bytes:
    return _bytes(_doc(name, **overrides))


def _data(name: str, **values: Any) -> bytes:
    """The base event with ``data`` replaced by ``values`` (``...`` drops the default)."""
    data = {"tokens": 7, "model": "m0"} | values
    return _event(name, data={k: v for k, v in data.items() if v is not ...})


def _raw(name: str, raw: bytes, **overrides: Any) -> bytes:
    """The base event with the string ``"@@raw@@"`` (placed by overrides) swapped for ``raw``."""
    text = _event(name, **overrides)
    assert text.count(b'"' + _RAW.encode() + b'"') == 1
    return text.replace(b'"' + _RAW.encode() + b'"', raw)


def _tokens(name: str, literal: bytes) -> bytes:
    """The base event whose ``data.tokens`` is the raw JSON text ``literal``."""
    return _raw(name, literal, data={"tokens": _RAW, "model": "m0"})


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _padded_to(name: str, size: int) -> bytes:
    """A valid event of exactly ``size`` bytes, padded in an unrelated property."""
    shell = _data(name, tokens=22, padding="")
    return _data(name, tokens=22, padding="x" * (size - len(shell)))


def build_corpus(now_ms: int) -> list[Hostile]:
    """Every entry; ``now_ms`` is the wall clock the flow will parse against (for future times)."""
    base = _event("base-template")
    m = Reason
    entries = [
        # -- not UTF-8, not JSON, or JSON nobody should guess at: malformed_json
        Hostile(
            "invalid-utf8", _raw("invalid-utf8", b'"\xff\xfe"', subject=_RAW), m.MALFORMED_JSON
        ),
        Hostile(
            "overlong-utf8", _raw("overlong-utf8", b'"\xc0\xaf"', subject=_RAW), m.MALFORMED_JSON
        ),
        Hostile(
            "utf8-encoded-surrogate",
            _raw("utf8-encoded-surrogate", b'"\xed\xa0\x80"', subject=_RAW),
            m.MALFORMED_JSON,
        ),
        # Python's utf-16 codec writes a BOM (FF FE) and then UTF-16-LE.
        Hostile(
            "utf16-with-bom", _event("utf16-with-bom").decode().encode("utf-16"), m.MALFORMED_JSON
        ),
        # RFC 8259: senders MUST NOT add a BOM; the parser refuses rather than guess.
        Hostile("utf8-bom", b"\xef\xbb\xbf" + _event("utf8-bom"), m.MALFORMED_JSON),
        Hostile("truncated-json", _event("truncated-json")[:-9], m.MALFORMED_JSON),
        Hostile("empty-payload", b"", m.MALFORMED_JSON),
        Hostile("whitespace-only", b" \t\r\n  ", m.MALFORMED_JSON),
        Hostile("trailing-garbage", _event("trailing-garbage") + b" x", m.MALFORMED_JSON),
        Hostile(
            "two-events-in-one-message",
            _event("two-events-a") + b"\n" + _event("two-events-b"),
            m.MALFORMED_JSON,
        ),
        Hostile(
            "single-quotes",
            _event("single-quotes").replace(b'"', b"'"),
            m.MALFORMED_JSON,
        ),
        Hostile("trailing-comma", _event("trailing-comma")[:-1] + b",}", m.MALFORMED_JSON),
        Hostile("comment", b"/* usage */ " + _event("comment"), m.MALFORMED_JSON),
        # JSON requires control characters in strings to be escaped.
        Hostile(
            "raw-control-char-in-subject",
            _raw("raw-control-char-in-subject", b'"glo\x01bex"', subject=_RAW),
            m.MALFORMED_JSON,
        ),
        # An unpaired surrogate escape has no UTF-8 form: it cannot be stored or keyed.
        Hostile(
            "lone-surrogate-escape",
            _raw("lone-surrogate-escape", b'"glo\\ud800bex"', subject=_RAW),
            m.MALFORMED_JSON,
        ),
        # Readers disagree on which copy of a repeated key wins: refuse the event.
        Hostile(
            "duplicate-id-key",
            _raw("duplicate-id-key", b'"hostile-dup-a", "id": "hostile-dup-b"', id=_RAW),
            m.MALFORMED_JSON,
        ),
        Hostile(
            "duplicate-key-in-data",
            _raw(
                "duplicate-key-in-data", b'7, "tokens": 7000', data={"tokens": _RAW, "model": "m0"}
            ),
            m.MALFORMED_JSON,
        ),
        # The same repeat, with the second key spaced the way many encoders write JSON.
        Hostile(
            "duplicate-key-spaced-colon",
            _raw(
                "duplicate-key-spaced-colon",
                b'7, "tokens" : 7000',
                data={"tokens": _RAW, "model": "m0"},
            ),
            m.MALFORMED_JSON,
        ),
        # A second subject, to bill another tenant than the one a first reader sees.
        Hostile(
            "duplicate-subject-key",
            _raw("duplicate-subject-key", b'"acme", "subject": "globex"', subject=_RAW),
            m.MALFORMED_JSON,
        ),
        # The tenant switched the same way: a first reader bills acme, orjson globex.
        Hostile(
            "duplicate-subject-key-spaced-colon",
            _raw(
                "duplicate-subject-key-spaced-colon",
                b'"acme", "subject"\t: "globex"',
                subject=_RAW,
            ),
            m.MALFORMED_JSON,
        ),
        # Deeper than orjson's 1024 levels: no reader is expected to take it.
        Hostile(
            "nested-2000-levels",
            _raw("nested-2000-levels", _nested(2000).encode(), data={"tokens": 7, "deep": _RAW}),
            m.MALFORMED_JSON,
        ),
        # -- JSON, but not an object: not_an_object
        Hostile("array", b"[" + base + b"]", m.NOT_AN_OBJECT),
        Hostile("string", b'"llm.completion acme 7"', m.NOT_AN_OBJECT),
        Hostile("number", b"42", m.NOT_AN_OBJECT),
        Hostile("null", b"null", m.NOT_AN_OBJECT),
        Hostile("boolean", b"true", m.NOT_AN_OBJECT),
        # -- required attributes absent or empty: missing_field
        Hostile("missing-id", _event("missing-id", id=...), m.MISSING_FIELD),
        Hostile("empty-id", _event("empty-id", id=""), m.MISSING_FIELD),
        Hostile("missing-source", _event("missing-source", source=...), m.MISSING_FIELD),
        Hostile("missing-subject", _event("missing-subject", subject=...), m.MISSING_FIELD),
        Hostile("empty-subject", _event("empty-subject", subject=""), m.MISSING_FIELD),
        Hostile(
            "missing-specversion", _event("missing-specversion", specversion=...), m.MISSING_FIELD
        ),
        Hostile("missing-type", _event("missing-type", type=...), m.MISSING_FIELD),
        Hostile("empty-type", _event("empty-type", type=""), m.MISSING_FIELD),
        Hostile("missing-time", _event("missing-time", time=...), m.MISSING_FIELD),
        Hostile("null-time", _event("null-time", time=None), m.MISSING_FIELD),
        Hostile("missing-data", _event("missing-data", data=...), m.MISSING_FIELD),
        Hostile("null-data", _event("null-data", data=None), m.MISSING_FIELD),
        # -- wrong JSON types: bad_type
        Hostile("id-as-number", _event("id-as-number", id=4242), m.BAD_TYPE),
        Hostile(
            "subject-as-object", _event("subject-as-object", subject={"tenant": "acme"}), m.BAD_TYPE
        ),
        Hostile("source-as-array", _event("source-as-array", source=[SOURCE]), m.BAD_TYPE),
        Hostile("time-as-number", _event("time-as-number", time=EVENT_MS), m.BAD_TYPE),
        Hostile("data-as-string", _event("data-as-string", data='{"tokens": 7}'), m.BAD_TYPE),
        Hostile("data-as-array", _event("data-as-array", data=[7]), m.BAD_TYPE),
        Hostile(
            "specversion-as-number",
            _raw("specversion-as-number", b"1.0", specversion=_RAW),
            m.BAD_TYPE,
        ),
        Hostile("tokens-as-boolean", _data("tokens-as-boolean", tokens=True), m.BAD_TYPE),
        Hostile("tokens-as-array", _data("tokens-as-array", tokens=[7]), m.BAD_TYPE),
        Hostile("tokens-as-object", _data("tokens-as-object", tokens={"value": 7}), m.BAD_TYPE),
        Hostile(
            "group-value-as-object",
            _data("group-value-as-object", model={"name": "m0"}),
            m.BAD_TYPE,
        ),
        Hostile("group-value-as-array", _data("group-value-as-array", model=["m0"]), m.BAD_TYPE),
        # -- specversion: bad_specversion
        Hostile("specversion-0.3", _event("specversion-0.3", specversion="0.3"), m.BAD_SPECVERSION),
        Hostile("specversion-1", _event("specversion-1", specversion="1"), m.BAD_SPECVERSION),
        Hostile(
            "specversion-padded",
            _event("specversion-padded", specversion=" 1.0"),
            m.BAD_SPECVERSION,
        ),
        # -- time: bad_time and future_time
        Hostile("time-1970", _event("time-1970", time="1970-01-01T00:00:00Z"), m.BAD_TIME),
        Hostile("time-year-1", _event("time-year-1", time="0001-01-01T00:00:00Z"), m.BAD_TIME),
        Hostile("time-1999", _event("time-1999", time="1999-12-31T23:59:59.999Z"), m.BAD_TIME),
        Hostile(
            "time-without-offset",
            _event("time-without-offset", time="2026-10-31T23:35:00.500"),
            m.BAD_TIME,
        ),
        Hostile("date-only", _event("date-only", time="2026-10-31"), m.BAD_TIME),
        Hostile("invalid-date", _event("invalid-date", time="2026-02-30T12:00:00Z"), m.BAD_TIME),
        Hostile("leap-second", _event("leap-second", time="2026-10-31T23:59:60Z"), m.BAD_TIME),
        Hostile(
            "offset-24-hours",
            _event("offset-24-hours", time="2026-10-31T23:35:00+24:00"),
            m.BAD_TIME,
        ),
        Hostile("empty-time", _event("empty-time", time=""), m.BAD_TIME),
        Hostile("epoch-ms-as-string", _event("epoch-ms-as-string", time=str(EVENT_MS)), m.BAD_TIME),
        Hostile(
            "rfc-2822-time",
            _event("rfc-2822-time", time="Sat, 31 Oct 2026 23:35:00 +0000"),
            m.BAD_TIME,
        ),
        Hostile("year-9999", _event("year-9999", time="9999-12-31T23:59:59Z"), m.FUTURE_TIME),
        Hostile(
            "now-plus-one-day",
            _event("now-plus-one-day", time=_iso(now_ms + 86_400_000)),
            m.FUTURE_TIME,
        ),
        # -- the value a meter reads: missing_value, bad_value, negative_value, ...
        Hostile("missing-tokens", _data("missing-tokens", tokens=...), m.MISSING_VALUE),
        Hostile("null-tokens", _data("null-tokens", tokens=None), m.MISSING_VALUE),
        Hostile("tokens-12abc", _data("tokens-12abc", tokens="12abc"), m.BAD_VALUE),
        Hostile("tokens-empty-string", _data("tokens-empty-string", tokens=""), m.BAD_VALUE),
        Hostile("tokens-hex", _data("tokens-hex", tokens="0x10"), m.BAD_VALUE),
        Hostile("tokens-underscores", _data("tokens-underscores", tokens="1_000"), m.BAD_VALUE),
        Hostile(
            "tokens-arabic-indic-digits",
            _data("tokens-arabic-indic-digits", tokens="١٢"),
            m.BAD_VALUE,
        ),
        Hostile(
            "ten-fractional-digits", _tokens("ten-fractional-digits", b"1.0000000001"), m.BAD_VALUE
        ),
        Hostile(
            "ten-fractional-digits-string",
            _data("ten-fractional-digits-string", tokens="0.0000000001"),
            m.BAD_VALUE,
        ),
        Hostile("tiny-exponent", _tokens("tiny-exponent", b"1e-10"), m.BAD_VALUE),
        Hostile("negative-integer", _data("negative-integer", tokens=-1), m.NEGATIVE_VALUE),
        Hostile("negative-fraction", _tokens("negative-fraction", b"-0.5"), m.NEGATIVE_VALUE),
        Hostile("negative-string", _data("negative-string", tokens="-5"), m.NEGATIVE_VALUE),
        Hostile("nan-literal", _tokens("nan-literal", b"NaN"), m.NON_FINITE_VALUE),
        Hostile("infinity-literal", _tokens("infinity-literal", b"Infinity"), m.NON_FINITE_VALUE),
        Hostile(
            "minus-infinity-literal",
            _tokens("minus-infinity-literal", b"-Infinity"),
            m.NON_FINITE_VALUE,
        ),
        Hostile("overflowing-1e400", _tokens("overflowing-1e400", b"1e400"), m.NON_FINITE_VALUE),
        Hostile("nan-string", _data("nan-string", tokens="NaN"), m.NON_FINITE_VALUE),
        Hostile(
            "infinity-string", _data("infinity-string", tokens="-Infinity"), m.NON_FINITE_VALUE
        ),
        # NaN is not JSON, but it is the number that is wrong, wherever it sits.
        Hostile(
            "nan-in-unrelated-property",
            _raw(
                "nan-in-unrelated-property",
                b"NaN",
                data={"tokens": 7, "model": "m0", "score": _RAW},
            ),
            m.NON_FINITE_VALUE,
        ),
        Hostile("float-1e19", _tokens("float-1e19", b"1e19"), m.VALUE_OUT_OF_RANGE),
        Hostile(
            "integer-10-pow-30",
            _tokens("integer-10-pow-30", str(10**30).encode()),
            m.VALUE_OUT_OF_RANGE,
        ),
        Hostile(
            "integer-10-pow-18",
            _tokens("integer-10-pow-18", str(10**18).encode()),
            m.VALUE_OUT_OF_RANGE,
        ),
        # As a decimal string 1e400 is exact, only too big: not an overflow.
        Hostile("string-1e400", _data("string-1e400", tokens="1e400"), m.VALUE_OUT_OF_RANGE),
        Hostile("string-1e18", _data("string-1e18", tokens="1e18"), m.VALUE_OUT_OF_RANGE),
        # -- size limits: too_large
        Hostile(
            "oversize-payload", _padded_to("oversize-payload", MAX_EVENT_BYTES + 1), m.TOO_LARGE
        ),
        Hostile(
            "oversize-payload-70k", _data("oversize-payload-70k", padding="x" * 70_000), m.TOO_LARGE
        ),
        Hostile("id-257-chars", _event("id-257-chars", id="i" * 257), m.TOO_LARGE),
        Hostile("subject-257-chars", _event("subject-257-chars", subject="s" * 257), m.TOO_LARGE),
        Hostile("source-257-chars", _event("source-257-chars", source="o" * 257), m.TOO_LARGE),
        Hostile(
            "group-value-257-chars", _data("group-value-257-chars", model="g" * 257), m.TOO_LARGE
        ),
        # -- the catalog: unknown_event_type (the test pricing names a default plan,
        # so no subject is unknown_subject)
        Hostile(
            "unknown-type", _event("unknown-type", type="llm.completions"), m.UNKNOWN_EVENT_TYPE
        ),
        Hostile(
            "type-wrong-case",
            _event("type-wrong-case", type="LLM.Completion"),
            m.UNKNOWN_EVENT_TYPE,
        ),
        Hostile(
            "type-trailing-space",
            _event("type-trailing-space", type="llm.completion "),
            m.UNKNOWN_EVENT_TYPE,
        ),
        Hostile(
            "sql-in-type",
            _event("sql-in-type", type="llm.completion' OR '1'='1"),
            m.UNKNOWN_EVENT_TYPE,
        ),
        # -- past the settlement horizon (1 h): decided by the window stage
        Hostile(
            "too-late",
            _event("too-late", subject="acme", time=_iso(BASE_MS - 180 * MINUTE)),
            m.TOO_LATE,
        ),
        # -- valid but weird: accepted, and stored exactly as sent
        Hostile(
            "unicode-tenant",
            _event("unicode-tenant", subject=UNICODE_TENANT, data={"tokens": 11, "model": "m0"}),
            None,
        ),
        Hostile(
            "emoji-group-value", _data("emoji-group-value", tokens=12, model=EMOJI_GROUP), None
        ),
        Hostile(
            "numeric-string-with-spaces", _data("numeric-string-with-spaces", tokens="  42 "), None
        ),
        Hostile("exponent-string", _data("exponent-string", tokens="1.5e3"), None),
        Hostile("exponent-number", _tokens("exponent-number", b"2.5E+3"), None),
        Hostile(
            "trailing-zero-fraction-beyond-9-digits",
            _tokens("trailing-zero-fraction-beyond-9-digits", b"1.500000000000"),
            None,
        ),
        Hostile("nine-fractional-digits", _tokens("nine-fractional-digits", b"0.000000001"), None),
        Hostile(
            "largest-value-below-1e18",
            _tokens("largest-value-below-1e18", str(10**18 - 1).encode()),
            None,
        ),
        Hostile("zero-value", _tokens("zero-value", b"-0"), None),
        Hostile(
            "sql-in-subject",
            _event("sql-in-subject", subject=SQL_SUBJECT, data={"tokens": 13, "model": "m0"}),
            None,
        ),
        Hostile(
            "sql-in-group-value", _data("sql-in-group-value", tokens=14, model=SQL_GROUP), None
        ),
        Hostile(
            "quotes-and-backslashes-in-group-value",
            _data("quotes-and-backslashes-in-group-value", tokens=15, model=QUOTES_GROUP),
            None,
        ),
        # Escaped control characters (even NUL) are ordinary JSON string content.
        Hostile(
            "escaped-control-chars-in-group-value",
            _data("escaped-control-chars-in-group-value", tokens=16, model=CONTROL_GROUP),
            None,
        ),
        Hostile("number-as-group-value", _data("number-as-group-value", tokens=17, model=3), None),
        Hostile("missing-group-value", _data("missing-group-value", tokens=18, model=...), None),
        Hostile(
            "nested-100-levels-in-unrelated-property",
            _raw(
                "nested-100-levels-in-unrelated-property",
                _nested(100).encode(),
                data={"tokens": 19, "model": "m0", "trace": _RAW},
            ),
            None,
        ),
        # Deeper than meterwax's limit of 128 levels: refused the same way whether
        # or not the metered value has a fraction (which is read by another parser).
        Hostile(
            "nested-1000-levels-integer-value",
            _raw(
                "nested-1000-levels-integer-value",
                _nested(1000).encode(),
                data={"tokens": 28, "model": "m0", "trace": _RAW},
            ),
            m.MALFORMED_JSON,
        ),
        Hostile(
            "nested-1000-levels-fractional-value",
            _raw(
                "nested-1000-levels-fractional-value",
                _nested(1000).encode(),
                data={"tokens": 28.5, "model": "m0", "trace": _RAW},
            ),
            m.MALFORMED_JSON,
        ),
        Hostile(
            "id-exactly-256-chars",
            _event(
                "id-exactly-256-chars",
                id="hostile-256-" + "i" * 244,
                data={"tokens": 20, "model": "m0"},
            ),
            None,
        ),
        # The limit counts characters, not bytes: 256 emoji are 1 KiB of UTF-8.
        Hostile(
            "id-256-emoji-chars",
            _event("id-256-emoji-chars", id="🧾" * 256, data={"tokens": 21, "model": "m0"}),
            None,
        ),
        Hostile(
            "exactly-max-event-bytes", _padded_to("exactly-max-event-bytes", MAX_EVENT_BYTES), None
        ),
        Hostile(
            "nanosecond-lowercase-time",
            _event(
                "nanosecond-lowercase-time",
                time="2026-10-31t23:35:00.123456789z",
                data={"tokens": 23, "model": "m0"},
            ),
            None,
        ),
        Hostile(
            "time-with-half-hour-offset",
            _event(
                "time-with-half-hour-offset",
                time="2026-11-01T05:05:00.500+05:30",
                data={"tokens": 24, "model": "m0"},
            ),
            None,
        ),
        Hostile(
            "extension-attributes",
            _event(
                "extension-attributes",
                subject="acme",
                traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                datacontenttype="application/json",
                data={"tokens": 25, "model": "m0"},
            ),
            None,
        ),
        # \u escapes decode to the same tenant as raw UTF-8 would.
        Hostile(
            "escaped-unicode-in-subject",
            _raw(
                "escaped-unicode-in-subject",
                b'"glob\\u0065x"',
                subject=_RAW,
                data={"tokens": 26, "model": "m0"},
            ),
            None,
        ),
        Hostile(
            "whitespace-around-tokens",
            _tokens("whitespace-around-tokens", b" \t\n 27 \r\n").replace(
                b'"model"', b'\n  "model"'
            ),
            None,
        ),
    ]
    return entries
