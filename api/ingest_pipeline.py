"""From a request body to produced events: split, validate with the flow's rules, produce.

Events are checked with the parser the flow runs (``flow.engine``), so an event
the API accepts is one the flow accepts, with the same reason codes for the
rest (except ``too_late``, which only the flow's watermark can tell).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from operators.model import RawMessage
from operators.parse import ParsedBatch
from sinks.kafka_ingest import IngestProducer

ORIGIN = "http"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event's fate: accepted, or rejected with the flow's reason code."""

    index: int
    accepted: bool
    reason: str = ""
    detail: str = ""
    subject: str = ""


@dataclass(frozen=True, slots=True)
class Checked:
    """A request's events checked: every outcome in input order, and what to produce."""

    outcomes: list[Outcome]
    # (subject, payload) of each accepted event, with its index among the outcomes.
    accepted: list[tuple[int, bytes, bytes]]


class IngestPipeline:
    """Validates events and produces the accepted ones; shared by every request."""

    def __init__(
        self,
        parse: Callable[[Sequence[RawMessage], int], ParsedBatch],
        producer: IngestProducer,
        max_body_bytes: int,
        max_batch_events: int,
    ) -> None:
        self.parse = parse
        self.producer = producer
        self.max_body_bytes = max_body_bytes
        self.max_batch_events = max_batch_events

    def check(self, payloads: Sequence[bytes], now_ms: int) -> Checked:
        """Each payload validated at wall time ``now_ms``, as the flow would."""
        batch = [RawMessage(p, ORIGIN, 0, n, now_ms) for n, p in enumerate(payloads)]
        parsed = self.parse(batch, now_ms)
        outcomes: list[Outcome | None] = [None] * len(payloads)
        accepted = []
        for event in parsed.events:
            index = event.message.offset
            outcomes[index] = Outcome(index, True, subject=event.tenant)
            accepted.append((index, event.tenant.encode(), event.message.payload))
        for rejection in parsed.rejections:
            index = rejection.offset
            outcomes[index] = Outcome(
                index, False, rejection.reason.value, rejection.detail, rejection.tenant
            )
        accepted.sort()
        return Checked([o for o in outcomes if o is not None], accepted)
