"""Domain values that flow between the pure operators.

Plain tuples and frozen dataclasses only: no engine, broker or database types
leak in here, so every operator can be tested with ordinary Python values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple


class RawMessage(NamedTuple):
    """One message as it came off the input, before anything is trusted.

    ``origin``/``partition``/``offset`` locate it in its input (Kafka topic,
    file path or generator name); they are what dead letters point back to and
    what tells a replay of a message apart from a true duplicate.
    ``arrived_ms`` is when it reached the input (the Kafka message timestamp, or
    when it was read): end-to-end latency is measured from it.
    """

    payload: bytes
    origin: str
    partition: int
    offset: int
    arrived_ms: int = 0


class Reason(StrEnum):
    """Why an event was rejected. Stable codes: dashboards and runbooks use them."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_SPECVERSION = "bad_specversion"
    BAD_TIME = "bad_time"
    FUTURE_TIME = "future_time"
    MISSING_VALUE = "missing_value"
    BAD_VALUE = "bad_value"
    NEGATIVE_VALUE = "negative_value"
    NON_FINITE_VALUE = "non_finite_value"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    TOO_LARGE = "too_large"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNKNOWN_SUBJECT = "unknown_subject"
    TOO_LATE = "too_late"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected event: its original bytes, where it came from, and why."""

    reason: Reason
    detail: str
    payload: bytes
    origin: str
    partition: int
    offset: int
    rejected_at_ms: int
    event_id: str = ""
    event_source: str = ""
    tenant: str = ""


# A group-by dimension set, canonical: sorted by name, values as text (a number's
# JSON text as written; see operators.parse._scalar_text).
GroupValues = tuple[tuple[str, str], ...]


class Measure(NamedTuple):
    """What one event contributes to one meter.

    ``value`` is a Decimal for SUM/MAX/LATEST, the canonical text of the
    property for UNIQUE_COUNT (a number as written: ``1.0`` and ``1`` are two
    values), and None for COUNT.
    """

    meter: str
    value: Decimal | str | None
    groups: GroupValues


class Event(NamedTuple):
    """An accepted, parsed CloudEvent reduced to what metering needs."""

    tenant: str
    source: str
    id: str
    type: str
    time_ms: int
    measures: tuple[Measure, ...]
    message: RawMessage

    @property
    def idempotency_key(self) -> str:
        """(tenant, source, id), length-prefixed so that no two triples share a key.

        The idempotency key is CloudEvents ``source`` + ``id`` within a tenant:
        the same scope as the Redis layer's keys.
        """
        return f"{len(self.tenant)}:{self.tenant}{len(self.source)}:{self.source}{self.id}"


class WindowKind(StrEnum):
    """``window``: emitted when the window closed on time; ``adjustment``: a late revision."""

    WINDOW = "window"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """A revision of one window's usage for one series (tenant, meter, groups).

    ``quantity`` is cumulative for the window; ``revision`` counts the distinct
    events folded in so far. A later revision always contains every event of an
    earlier one, so the highest revision is the window's value whatever order,
    batching or replay produced the rows. ``previous_quantity`` is what this run
    emitted before for the same window (0 for the first row), so
    ``quantity - previous_quantity`` is the signed change this row makes.
    """

    tenant: str
    meter: str
    groups: GroupValues
    window_start_ms: int
    window_end_ms: int
    quantity: Decimal
    previous_quantity: Decimal
    revision: int
    kind: WindowKind
    # The window's accumulator, for rating against the billing period; not data.
    accumulator: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RatedWindow:
    """A window revision with its price applied; what the sink stores."""

    tenant: str
    meter: str
    groups: GroupValues
    window_start_ms: int
    window_end_ms: int
    quantity: Decimal
    previous_quantity: Decimal
    amount: Decimal
    previous_amount: Decimal
    currency: str
    plan_id: str
    price_version: str
    revision: int
    kind: WindowKind
    emitted_at_ms: int
    # The billing period (or its part under this price version) after the revision:
    # its start, its usage as the meter aggregates it, and the cost it was priced at.
    period_start_ms: int
    period_quantity: Decimal
    period_amount: Decimal
    # Which flow incarnation stored it (see operators.contributions), the meter's
    # aggregation, and what combining it with other incarnations needs.
    incarnation: str = ""
    aggregation: str = ""
    latest_ms: int = -1
    distinct_values: frozenset[str] = frozenset()


# A billing period as run summaries report it: tenant, meter, period start,
# plan, price version and currency.
PeriodName = tuple[str, str, int, str, str, str]


@dataclass(frozen=True, slots=True)
class RatedColumns:
    """Rated window revisions as columns, one list per RatedWindow field: the native engine's.

    Row i of every list is one revision; ``kind`` holds WindowKind values as
    text and ``distinct_values`` each row's values sorted. Decimals are exact
    texts, as the core writes them (``Decimal(text)`` is the value): most rows
    only pass through to ClickHouse, which takes them as text. One emission
    shares ``emitted_at_ms`` and ``incarnation``.
    """

    tenant: list[str]
    meter: list[str]
    groups: list[GroupValues]
    window_start_ms: list[int]
    window_end_ms: list[int]
    quantity: list[str]
    previous_quantity: list[str]
    amount: list[str]
    previous_amount: list[str]
    currency: list[str]
    plan_id: list[str]
    price_version: list[str]
    revision: list[int]
    kind: list[str]
    period_start_ms: list[int]
    period_quantity: list[str]
    period_amount: list[str]
    aggregation: list[str]
    latest_ms: list[int]
    distinct_values: list[list[str]]
    emitted_at_ms: int
    incarnation: str
    # Per (currency, "charge" or "credit"): the rows' changes in amount added up, as
    # exact text, when the core summed them (None: the metrics sum the rows).
    amount_changes: list[tuple[str, str, str]] | None = None

    def __len__(self) -> int:
        return len(self.tenant)

    def periods(self) -> Iterator[tuple[PeriodName, tuple[str, str]]]:
        """Each row's billing period with its (quantity, cost) texts after the row, in order."""
        names = zip(
            self.tenant,
            self.meter,
            self.period_start_ms,
            self.plan_id,
            self.price_version,
            self.currency,
            strict=True,
        )
        return zip(names, zip(self.period_quantity, self.period_amount, strict=True), strict=True)

    def windows(self) -> list[RatedWindow]:
        """The rows as RatedWindow objects (what the Python engine emits)."""
        return [
            RatedWindow(
                tenant=self.tenant[i],
                meter=self.meter[i],
                groups=self.groups[i],
                window_start_ms=self.window_start_ms[i],
                window_end_ms=self.window_end_ms[i],
                quantity=Decimal(self.quantity[i]),
                previous_quantity=Decimal(self.previous_quantity[i]),
                amount=Decimal(self.amount[i]),
                previous_amount=Decimal(self.previous_amount[i]),
                currency=self.currency[i],
                plan_id=self.plan_id[i],
                price_version=self.price_version[i],
                revision=self.revision[i],
                kind=WindowKind(self.kind[i]),
                emitted_at_ms=self.emitted_at_ms,
                period_start_ms=self.period_start_ms[i],
                period_quantity=Decimal(self.period_quantity[i]),
                period_amount=Decimal(self.period_amount[i]),
                incarnation=self.incarnation,
                aggregation=self.aggregation[i],
                latest_ms=self.latest_ms[i],
                distinct_values=frozenset(self.distinct_values[i]),
            )
            for i in range(len(self))
        ]
