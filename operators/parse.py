"""Parse and validate CloudEvents 1.0 (JSON structured mode) into metering events.

Every message ends as exactly one accepted ``Event`` or one ``Rejection`` with
a reason code: nothing is dropped. An event counts for all the meters its
``type`` matches or for none of them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Any, NoReturn

import orjson

from config.jsonpath import MISSING, JsonPath
from config.meters import Aggregation, MeterCatalog, MeterDefinition
from operators.limits import MAX_FRACTION_DIGITS, MAX_INT_VALUE, MAX_VALUE
from operators.model import Event, GroupValues, Measure, RawMessage, Reason, Rejection
from operators.money import EXACT
from operators.timeparse import TimeFormatError, parse_rfc3339_ms

_FRACTION_QUANTUM = Decimal(1).scaleb(-9)
# Like EXACT, but dropping trailing zeros is allowed (Rounded): only Inexact is an error.
_DROP_ZEROS = Context(prec=76, traps=[Inexact, InvalidOperation])
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_NON_FINITE_TEXT = re.compile(r"[+-]?(?:nan|snan|inf|infinity)", re.IGNORECASE)
MAX_ATTRIBUTE_CHARS = 256
# Deeper documents are refused whatever parser would read them: one limit for
# every event (orjson stops at 1024, the standard library somewhat earlier).
MAX_DEPTH = 128
MAX_GROUP_VALUE_CHARS = 256
# Earliest accepted event time: 2000-01-01T00:00:00Z. Older stamps are broken clocks.
MIN_TIME_MS = 946_684_800_000
# Latest accepted event time, whatever max_future_skew allows: 2200-01-01T00:00:00Z.
# Billing periods and ClickHouse's DateTime64 (up to 2299) must hold every window.
MAX_TIME_MS = 7_258_118_400_000

_REQUIRED_STRINGS = ("id", "source", "type", "subject")


class _Reject(Exception):
    """Internal: carries a reason and detail out of the per-event checks."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ParserConfig:
    """What validation needs to know."""

    meters: MeterCatalog
    known_tenant: Callable[[str], bool]
    max_event_bytes: int = 65_536
    max_future_skew_ms: int = 300_000


@dataclass(slots=True)
class ParsedBatch:
    """A batch split into accepted events and rejections, in input order.

    ``max_time_ms`` is the latest accepted event time (None when none was
    accepted); watermarks advance from it.
    """

    events: list[Event]
    rejections: list[Rejection]
    max_time_ms: int | None


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def _to_decimal(value: Any, where: str) -> Decimal:
    """A JSON number or numeric string as an exact, finite, in-range Decimal.

    Numbers come as orjson's exact ints or, from the exact path, as their text:
    orjson's floats never get here.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Reject(Reason.BAD_TYPE, f"{where}: expected a number, got {_type_name(value)}")
    if isinstance(value, int):
        number = Decimal(value)
    else:
        # JSON's number grammar is a subset of Decimal's.
        text = value if type(value) is _NumberText else value.strip(" \t\r\n")
        if _NON_FINITE_TEXT.fullmatch(text):
            raise _Reject(Reason.NON_FINITE_VALUE, f"{where}: {value!r} is not a finite number")
        # Only plain ASCII decimal notation: Decimal() would also take "1_000" and "١٢".
        if not _NUMBER_TEXT.fullmatch(text):
            raise _Reject(Reason.BAD_VALUE, f"{where}: {_describe(value)} is not a number")
        try:
            number = Decimal(text)
        except ArithmeticError:
            # An exponent beyond what any Decimal holds (1e999999999999999999999).
            raise _Reject(
                Reason.VALUE_OUT_OF_RANGE, f"{where}: {_describe(value)} is out of range"
            ) from None
    if number < 0:
        raise _Reject(Reason.NEGATIVE_VALUE, f"{where}: {number} is negative")
    if number >= MAX_VALUE:
        raise _Reject(Reason.VALUE_OUT_OF_RANGE, f"{where}: {number:.3E} is 1E+18 or more")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_FRACTION_DIGITS:
        # Trailing zeros are fine (1.50000000000); anything that would round is not.
        try:
            number = number.quantize(_FRACTION_QUANTUM, context=_DROP_ZEROS).normalize(EXACT)
        except ArithmeticError:
            raise _Reject(
                Reason.BAD_VALUE,
                f"{where}: {_describe(value)} has more than {MAX_FRACTION_DIGITS} "
                "fractional digits",
            ) from None
    return number


def _scalar_text(value: Any, where: str) -> str:
    """Canonical text of a scalar used as a group-by or distinct value.

    A string is itself, a number the JSON text it was written as (from the
    exact path), a boolean ``true`` or ``false``.
    """
    if isinstance(value, str):
        if len(value) > MAX_GROUP_VALUE_CHARS:
            raise _Reject(
                Reason.TOO_LARGE, f"{where}: longer than {MAX_GROUP_VALUE_CHARS} characters"
            )
        # A plain str, not _NumberText, goes into window state and snapshots.
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    # orjson's ints are exact, and their digits are the text, but for a 0 that
    # may have been written -0; its floats may have rounded or respelled the text.
    if type(value) is int and value:
        return str(value)
    if isinstance(value, int | float):
        raise _Inexact
    raise _Reject(Reason.BAD_TYPE, f"{where}: expected a scalar, got {_type_name(value)}")


@dataclass(frozen=True, slots=True)
class _MeterPlan:
    slug: str
    aggregation: Aggregation
    value_path: JsonPath | None
    group_by: tuple[tuple[str, JsonPath], ...]
    numeric: bool  # values are numbers, not UNIQUE_COUNT's distinct keys

    @classmethod
    def of(cls, meter: MeterDefinition) -> _MeterPlan:
        groups = tuple(sorted(meter.group_by, key=lambda item: item[0]))
        numeric = meter.aggregation is not Aggregation.UNIQUE_COUNT
        return cls(meter.slug, meter.aggregation, meter.value_path, groups, numeric)

    def measure(self, data: dict[str, Any]) -> Measure:
        groups: GroupValues = ()
        if self.group_by:
            groups = tuple([(name, _group_value(path, data)) for name, path in self.group_by])
        path = self.value_path
        if path is None:
            return Measure(self.slug, None, groups)
        raw = path.find(data)
        raw_type = type(raw)
        if self.numeric:
            if raw_type is int and 0 <= raw < MAX_INT_VALUE:
                return Measure(self.slug, Decimal(raw), groups)
            if raw_type is float:
                raise _Inexact
            if raw is MISSING or raw is None:
                raise self._missing(path)
            return Measure(self.slug, _to_decimal(raw, _where(path)), groups)
        if raw_type is str and len(raw) <= MAX_GROUP_VALUE_CHARS:
            return Measure(self.slug, raw, groups)
        if raw is MISSING or raw is None:
            raise self._missing(path)
        return Measure(self.slug, _scalar_text(raw, _where(path)), groups)

    def _missing(self, path: JsonPath) -> _Reject:
        return _Reject(
            Reason.MISSING_VALUE, f"{_where(path)}: required by meter {self.slug!r} but absent"
        )


def _key_count(doc: dict[str, Any]) -> int:
    """Object keys in a parsed document (orjson keeps only the last of duplicates)."""
    # Fast path for the usual shape, an envelope with flat objects in it.
    count = len(doc)
    for value in doc.values():
        kind = type(value)
        if kind is dict:
            count += len(value)
            for inner in value.values():
                if type(inner) in _CONTAINERS:
                    return _nested_key_count(doc)
        elif kind is list:
            return _nested_key_count(doc)
    return count


def _nested_key_count(doc: dict[str, Any]) -> int:
    """Keys of a nested document; rejects nesting deeper than MAX_DEPTH."""
    count = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    # A loop, not recursion: orjson accepts nesting deeper than Python's stack.
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Reject(Reason.MALFORMED_JSON, f"nested deeper than {MAX_DEPTH} levels")
        if type(node) is dict:
            count += len(node)
            children = node.values()
        else:
            children = node
        stack.extend((child, depth + 1) for child in children if type(child) in _CONTAINERS)
    return count


_CONTAINERS = (dict, list)


def _spaced_colon(payload: bytes) -> bool:
    """Whether a key may be followed by white space before its colon (not counted as ``":``)."""
    return b" :" in payload or b"\t:" in payload or b"\n:" in payload or b"\r:" in payload


def _check_unique_keys(payload: bytes) -> None:
    """Reject a document that repeats a key in one object.

    Parsers disagree on which copy wins, so such an event could be billed
    differently by any other reader. Called only when compact JSON's count of
    ``":`` differs from the parsed key count: a repeated key, or merely other
    spacing or a ``":`` inside a string, told apart here.
    """

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            counts = Counter(key for key, _ in pairs)
            repeated = next(key for key, n in counts.items() if n > 1)
            raise _Reject(
                Reason.MALFORMED_JSON, f"key {repeated[:64]!r} appears twice in one object"
            )
        return result

    try:
        json.loads(payload, object_pairs_hook=unique, parse_constant=_raise_non_finite)
    except RecursionError:
        raise _Reject(Reason.MALFORMED_JSON, "nested too deeply to check") from None


class _Inexact(Exception):
    """orjson's reading of a value may differ from its JSON text (a float, or a 0 from -0)."""


class _NumberText(str):
    """A JSON number as written, from the exact path."""

    __slots__ = ()


def _measures(plans: tuple[_MeterPlan, ...], data: dict[str, Any]) -> tuple[Measure, ...]:
    if len(plans) == 1:
        return (plans[0].measure(data),)
    return tuple([plan.measure(data) for plan in plans])


def _exact_data(payload: bytes) -> dict[str, Any]:
    """``data`` with every JSON number kept as its text (``_NumberText``).

    orjson reads 1234567890.123456789 as the nearest double, 1e-400 as 0.0 and
    18446744073709551617 as 1.8446744073709552e+19; billing must see the number
    that was sent, so events whose values orjson may have changed take this
    slower, exact path.
    """
    try:
        doc = json.loads(
            payload,
            parse_float=_NumberText,
            parse_int=_NumberText,
            parse_constant=_raise_non_finite,
        )
    except RecursionError:
        # orjson allows 1024 levels of nesting, the standard library a little less.
        raise _Reject(Reason.MALFORMED_JSON, "nested too deeply to read exactly") from None
    data: dict[str, Any] = doc["data"]
    return data


def _where(path: JsonPath) -> str:
    """``$.a.b`` as the user sees it in the event: ``data.a.b``."""
    return f"data{path.text[1:]}"


def _group_value(path: JsonPath, data: dict[str, Any]) -> str:
    raw = path.find(data)
    if type(raw) is str and len(raw) <= MAX_GROUP_VALUE_CHARS:
        return raw
    # A missing group-by property is its own group (""), as OpenMeter does.
    if raw is MISSING or raw is None:
        return ""
    return _scalar_text(raw, _where(path))


class BatchParser:
    """Validates batches of raw messages against the meter catalog and tenants."""

    def __init__(self, config: ParserConfig) -> None:
        self._config = config
        self._plans: dict[str, tuple[_MeterPlan, ...]] = {
            event_type: tuple(_MeterPlan.of(m) for m in meters)
            for event_type, meters in config.meters.by_event_type.items()
        }
        self._tenant_cache: dict[str, bool] = {}

    def parse(self, batch: Sequence[RawMessage], now_ms: int) -> ParsedBatch:
        """Split ``batch`` into accepted events and rejections; ``now_ms`` is wall time."""
        events: list[Event] = []
        rejections: list[Rejection] = []
        max_time: int | None = None
        latest_allowed = now_ms + self._config.max_future_skew_ms
        for message in batch:
            try:
                event = self._parse_one(message, latest_allowed)
            except _Reject as rejected:
                rejections.append(self._rejection(message, rejected, now_ms))
                continue
            events.append(event)
            if max_time is None or event.time_ms > max_time:
                max_time = event.time_ms
        return ParsedBatch(events, rejections, max_time)

    def _parse_one(self, message: RawMessage, latest_allowed_ms: int) -> Event:
        payload = message.payload
        if len(payload) > self._config.max_event_bytes:
            raise _Reject(
                Reason.TOO_LARGE,
                f"{len(payload)} bytes, more than the limit of {self._config.max_event_bytes}",
            )
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise _classify_bad_json(payload, exc) from None
        if type(doc) is not dict:
            raise _Reject(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {_type_name(doc)}")
        if payload.count(b'":') != _key_count(doc) or _spaced_colon(payload):
            _check_unique_keys(payload)
        get = doc.get
        event_id, source = get("id"), get("source")
        event_type, subject = get("type"), get("subject")
        data = get("data")
        # One cheap test for the common, valid case; the detailed checks below
        # run only to name what is wrong.
        if not (
            get("specversion") == "1.0"
            and type(event_id) is str
            and type(source) is str
            and type(event_type) is str
            and type(subject) is str
            and 0 < len(event_id) <= MAX_ATTRIBUTE_CHARS
            and 0 < len(source) <= MAX_ATTRIBUTE_CHARS
            and 0 < len(event_type) <= MAX_ATTRIBUTE_CHARS
            and 0 < len(subject) <= MAX_ATTRIBUTE_CHARS
            and type(data) is dict
        ):
            self._explain_envelope(doc)
        time_ms = self._event_time(get("time", MISSING), latest_allowed_ms)
        plans = self._plans.get(event_type)
        if plans is None:
            raise _Reject(Reason.UNKNOWN_EVENT_TYPE, f"type {event_type!r} matches no meter")
        if not self._known_tenant(subject):
            raise _Reject(
                Reason.UNKNOWN_SUBJECT, f"subject {subject!r} has no subscription or default plan"
            )
        try:
            measures = _measures(plans, data)
        except _Inexact:
            measures = _measures(plans, _exact_data(payload))
        return Event(subject, source, event_id, event_type, time_ms, measures, message)

    def _explain_envelope(self, doc: dict[str, Any]) -> NoReturn:
        """Raise the rejection that names the first envelope problem of ``doc``."""
        self._check_specversion(doc)
        for name in _REQUIRED_STRINGS:
            self._required_string(doc, name)
        data = doc.get("data", MISSING)
        if data is MISSING or data is None:
            raise _Reject(Reason.MISSING_FIELD, "data: required, an object with the usage values")
        raise _Reject(Reason.BAD_TYPE, f"data: expected an object, got {_type_name(data)}")

    @staticmethod
    def _check_specversion(doc: dict[str, Any]) -> None:
        version = doc.get("specversion", MISSING)
        if version == "1.0":
            return
        if version is MISSING:
            raise _Reject(Reason.MISSING_FIELD, "specversion: required, must be '1.0'")
        if not isinstance(version, str):
            raise _Reject(
                Reason.BAD_TYPE, f"specversion: expected a string, got {_type_name(version)}"
            )
        raise _Reject(Reason.BAD_SPECVERSION, f"specversion {_describe(version)} is not '1.0'")

    @staticmethod
    def _required_string(doc: dict[str, Any], name: str) -> str:
        value = doc.get(name, MISSING)
        if isinstance(value, str) and value and len(value) <= MAX_ATTRIBUTE_CHARS:
            return value
        if value is MISSING or value is None:
            raise _Reject(Reason.MISSING_FIELD, f"{name}: required")
        if not isinstance(value, str):
            raise _Reject(Reason.BAD_TYPE, f"{name}: expected a string, got {_type_name(value)}")
        if not value:
            raise _Reject(Reason.MISSING_FIELD, f"{name}: must not be empty")
        raise _Reject(Reason.TOO_LARGE, f"{name}: longer than {MAX_ATTRIBUTE_CHARS} characters")

    @staticmethod
    def _event_time(text: Any, latest_allowed_ms: int) -> int:
        if text is MISSING or text is None:
            raise _Reject(Reason.MISSING_FIELD, "time: required, RFC 3339 with an offset")
        if not isinstance(text, str):
            raise _Reject(Reason.BAD_TYPE, f"time: expected a string, got {_type_name(text)}")
        try:
            time_ms = parse_rfc3339_ms(text)
        except TimeFormatError as exc:
            raise _Reject(Reason.BAD_TIME, str(exc)) from None
        if time_ms < MIN_TIME_MS:
            raise _Reject(Reason.BAD_TIME, f"time {text!r} is before 2000-01-01")
        if time_ms > latest_allowed_ms:
            raise _Reject(Reason.FUTURE_TIME, f"time {text!r} is ahead of the clock")
        if time_ms >= MAX_TIME_MS:
            raise _Reject(Reason.FUTURE_TIME, f"time {text!r} is not before 2200-01-01")
        return time_ms

    def _known_tenant(self, subject: str) -> bool:
        known = self._tenant_cache.get(subject)
        if known is None:
            known = self._config.known_tenant(subject)
            if len(self._tenant_cache) < 1_000_000:
                self._tenant_cache[subject] = known
        return known

    @staticmethod
    def _rejection(message: RawMessage, rejected: _Reject, now_ms: int) -> Rejection:
        event_id = source = subject = ""
        # Best effort: name the event in the dead letter when its envelope is readable.
        try:
            doc = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            event_id = _short_text(doc.get("id"))
            source = _short_text(doc.get("source"))
            subject = _short_text(doc.get("subject"))
        return Rejection(
            reason=rejected.reason,
            detail=rejected.detail,
            payload=message.payload,
            origin=message.origin,
            partition=message.partition,
            offset=message.offset,
            rejected_at_ms=now_ms,
            event_id=event_id,
            event_source=source,
            tenant=subject,
        )


def _short_text(value: Any) -> str:
    return value[:MAX_ATTRIBUTE_CHARS] if isinstance(value, str) else ""


def _classify_bad_json(payload: bytes, error: orjson.JSONDecodeError) -> _Reject:
    """Tell non-finite numbers (NaN, Infinity, 1e400) apart from broken JSON.

    orjson refuses them all alike; the standard library accepts NaN and Infinity,
    so it is asked only on this rare path.
    """
    message = str(error)
    if "infinity" in message:
        return _Reject(Reason.NON_FINITE_VALUE, f"a number overflows to infinity: {message}")
    try:
        json.loads(payload, parse_constant=_raise_non_finite)
    except _NonFinite as found:
        return _Reject(Reason.NON_FINITE_VALUE, f"{found} is not a finite number")
    except (ValueError, RecursionError):
        pass
    return _Reject(Reason.MALFORMED_JSON, message)


class _NonFinite(Exception):
    pass


def _raise_non_finite(constant: str) -> Any:
    raise _NonFinite(constant)
