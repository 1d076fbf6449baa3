"""From a request body to produced events: split, validate with the flow's rules, produce.

Events are checked by the native core's parser (operators.native_parse), which
the differential tests hold to operators/parse.py: an event the API accepts is
one the flow accepts, and the rest get the flow's reason codes (except
``too_late``, which only the flow's watermark can tell). Only the columns the
API needs are read back: which events passed, their subjects, the rejections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from operators.native_parse import NativeParser
from sinks.kafka_ingest import IngestProducer


@dataclass(frozen=True, slots=True)
class Checked:
    """A request's events checked: what to produce, and why the others were rejected."""

    count: int
    # (position in the request, subject, payload) of each accepted event, in input order.
    accepted: list[tuple[int, bytes, bytes]]
    # Position -> (the flow's reason code, detail, subject as far as readable).
    rejected: dict[int, tuple[str, str, str]]


class IngestPipeline:
    """Validates events and produces the accepted ones; shared by every request."""

    def __init__(
        self,
        parser: NativeParser,
        producer: IngestProducer,
        max_body_bytes: int,
        max_batch_events: int,
    ) -> None:
        self.parser = parser
        self.producer = producer
        self.max_body_bytes = max_body_bytes
        self.max_batch_events = max_batch_events

    def check(self, payloads: Sequence[bytes], now_ms: int) -> Checked:
        """Each payload validated at wall time ``now_ms``, as the flow would."""
        cols = self.parser.columns(payloads, now_ms)
        tenants = [tenant.encode() for tenant in cols.tenants]
        accepted = [
            (index, tenants[tenant], payloads[index])
            for index, tenant in zip(
                memoryview(cols.index).cast("I"), memoryview(cols.tenant).cast("I"), strict=True
            )
        ]
        rejected = {
            index: (reason, detail, subject)
            for index, reason, detail, _id, _source, subject in cols.rejections
        }
        return Checked(len(payloads), accepted, rejected)
