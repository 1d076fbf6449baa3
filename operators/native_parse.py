"""The native core's parse step (operators._native), behind the Python parser's types.

The core validates a whole batch in Rust with operators/parse.py's rules and
reason codes, without the GIL and without a Python object per event: it
returns columns (scaled-integer quantities, interned tenants, texts as spans of
one buffer). ``NativeParser.parse`` turns them into the specification's
``ParsedBatch`` (Decimal only here, at the edge), which is what the
differential tests compare.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Sequence
from decimal import Decimal
from itertools import accumulate

from config.jsonpath import JsonPath
from config.meters import Aggregation, MeterCatalog
from config.pricing import PricingCatalog
from operators._native import ParsedColumns, Parser
from operators.message_batch import MessageBatch
from operators.model import Event, Measure, RawMessage, Reason, Rejection
from operators.parse import ParsedBatch


def known_tenants(pricing: PricingCatalog) -> list[str] | None:
    """The tenants the pricing rates: None when a default plan rates every tenant."""
    return None if pricing.default_plan is not None else sorted(pricing.subscriptions)


def _path(path: JsonPath) -> tuple[str, list[str | int]]:
    return path.text, list(path.steps)


def quantity(units: int, nanos: int) -> Decimal:
    """A scaled-integer quantity as an exact Decimal (no exponent, no trailing zeros)."""
    if not nanos:
        return Decimal(units)
    return Decimal(f"{units}.{nanos:09d}".rstrip("0"))


class NativeParser:
    """Validates batches of raw messages with the native core."""

    def __init__(
        self,
        meters: MeterCatalog,
        known_tenants: Collection[str] | None,
        max_event_bytes: int = 65_536,
        max_future_skew_ms: int = 300_000,
    ) -> None:
        self._meters = meters.meters
        specs = [
            (
                m.slug,
                m.event_type,
                m.aggregation is not Aggregation.UNIQUE_COUNT,
                None if m.value_path is None else _path(m.value_path),
                [_path(p) for _, p in sorted(m.group_by, key=lambda item: item[0])],
            )
            for m in self._meters
        ]
        tenants = None if known_tenants is None else list(known_tenants)
        self._parser = Parser(specs, tenants, max_event_bytes, max_future_skew_ms)
        self._event_types = self._parser.event_types

    def columns(self, payloads: Sequence[bytes], now_ms: int) -> ParsedColumns:
        """Parse ``payloads`` at wall time ``now_ms`` into columns."""
        ends = array("Q", accumulate(len(p) for p in payloads))
        return self._parser.parse_batch(b"".join(payloads), ends, now_ms)

    def batch_columns(self, batch: MessageBatch, now_ms: int) -> ParsedColumns:
        """Parse the messages of ``batch`` at wall time ``now_ms`` into columns."""
        return self._parser.parse_batch(batch.data, batch.ends, now_ms)

    def parse(self, batch: Sequence[RawMessage], now_ms: int) -> ParsedBatch:
        """Like ``BatchParser.parse``: accepted events and rejections, in input order."""
        cols = self.columns([m.payload for m in batch], now_ms)
        text = cols.text
        index = memoryview(cols.index).cast("I")
        time_ms = memoryview(cols.time_ms).cast("q")
        tenant = memoryview(cols.tenant).cast("I")
        event_type = memoryview(cols.event_type).cast("I")
        source = memoryview(cols.source).cast("Q")
        ids = memoryview(cols.id).cast("Q")
        measure_event = memoryview(cols.measure_event).cast("I")
        meter = memoryview(cols.meter).cast("I")
        units = memoryview(cols.units).cast("Q")
        nanos = memoryview(cols.nanos).cast("I")
        distinct = memoryview(cols.distinct).cast("Q")
        group_spans = memoryview(cols.groups).cast("Q")

        def span(spans: memoryview, at: int) -> str:
            return text[spans[2 * at] : spans[2 * at + 1]].decode()

        measures: list[list[Measure]] = [[] for _ in range(len(index))]
        next_group = 0
        for row, event_row in enumerate(measure_event):
            definition = self._meters[meter[row]]
            names = sorted(name for name, _ in definition.group_by)
            groups = tuple(
                (name, span(group_spans, next_group + k)) for k, name in enumerate(names)
            )
            next_group += len(names)
            value: Decimal | str | None
            if definition.aggregation is Aggregation.COUNT:
                value = None
            elif definition.aggregation is Aggregation.UNIQUE_COUNT:
                value = span(distinct, row)
            else:
                value = quantity(units[row], nanos[row])
            measures[event_row].append(Measure(definition.slug, value, groups))
        events = [
            Event(
                tenant=cols.tenants[tenant[row]],
                source=span(source, row),
                id=span(ids, row),
                type=self._event_types[event_type[row]],
                time_ms=time_ms[row],
                measures=tuple(measures[row]),
                message=batch[index[row]],
            )
            for row in range(len(index))
        ]
        return ParsedBatch(events, rejections(batch, cols, now_ms), cols.max_time_ms)


def rejections(batch: Sequence[RawMessage], cols: ParsedColumns, now_ms: int) -> list[Rejection]:
    """The rejections of ``cols`` (parsed from ``batch`` at ``now_ms``), in input order."""
    return [
        Rejection(
            reason=Reason(code),
            detail=detail,
            payload=batch[at].payload,
            origin=batch[at].origin,
            partition=batch[at].partition,
            offset=batch[at].offset,
            rejected_at_ms=now_ms,
            event_id=event_id,
            event_source=event_source,
            tenant=subject,
        )
        for at, code, detail, event_id, event_source, subject in cols.rejections
    ]
