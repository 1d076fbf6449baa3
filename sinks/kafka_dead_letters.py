"""Dead-letter topic: every rejected event, with its reason, original bytes and origin.

The message value is the original payload, byte for byte, so a fixed event
can be re-produced as is; the reason and where it came from travel in
headers. The key is ``topic:partition:offset`` of the original message, so
consumers can drop the copies that a replay after a crash re-sends
(delivery is at least once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from operators.model import Rejection
from sinks.retry import RetryPolicy, always

log = logging.getLogger(__name__)

HEADER_PREFIX = "meterwax."
# Kafka's default message.max.bytes is ~1 MB; a bigger original (rejected as
# too_large) is cut to this size so that it cannot block the dead-letter topic.
MAX_VALUE_BYTES = 900_000


class DeadLetterError(RuntimeError):
    """Dead letters could not be delivered; the flow stops rather than lose them."""


def dead_letter_headers(rejection: Rejection) -> list[tuple[str, str | bytes | None]]:
    """The headers that describe a rejection (``truncated_from`` when the value was cut)."""
    fields = {
        "reason": rejection.reason.value,
        "detail": rejection.detail,
        "origin": rejection.origin,
        "partition": str(rejection.partition),
        "offset": str(rejection.offset),
        "rejected_at_ms": str(rejection.rejected_at_ms),
        "event_id": rejection.event_id,
        "event_source": rejection.event_source,
        "tenant": rejection.tenant,
    }
    if len(rejection.payload) > MAX_VALUE_BYTES:
        fields["truncated_from"] = str(len(rejection.payload))
    return [(HEADER_PREFIX + name, value.encode()) for name, value in fields.items()]


def dead_letter_key(rejection: Rejection) -> bytes:
    """Where the original message was: ``topic:partition:offset``."""
    return f"{rejection.origin}:{rejection.partition}:{rejection.offset}".encode()


Record = tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]  # key, value, headers


class _Undelivered(Exception):
    """Some records of a delivery failed; they are tried again."""


class ConfirmedProducer:
    """Produces records to ``topic`` and waits until the broker has them all."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        config: Mapping[str, Any] | None = None,
        *,
        max_attempts: int = 8,
        flush_timeout_s: float = 30.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        settings: dict[str, Any] = {
            "bootstrap.servers": brokers,
            # Idempotent producer: broker-side retries never write a message twice.
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
        }
        settings.update(config or {})
        self._producer = Producer(settings)
        self.topic = topic
        # Delays 0.4 s, 0.8 s, ... up to 10 s between deliveries of what failed.
        self._retry = RetryPolicy(initial_s=0.4, max_s=10.0, attempts=max_attempts)
        self._flush_timeout_s = flush_timeout_s
        # Told of every failed attempt (a metric), while delivery keeps retrying.
        self.on_failure = on_failure or (lambda: None)

    def send_records(self, records: Sequence[Record]) -> None:
        """Deliver every record, retrying failed ones; raise DeadLetterError if impossible."""
        pending = list(records)
        errors: set[str] = set()

        def deliver() -> None:
            nonlocal pending, errors
            failed = self._deliver(pending)
            if failed:
                errors = {str(error) for _, error in failed}
                pending = [record for record, _ in failed]
                raise _Undelivered

        def retrying(exc: BaseException, failures: int, delay: float) -> None:
            log.warning(
                "%d records to %s failed (attempt %d/%d), retrying in %.1fs: %s",
                len(pending),
                self.topic,
                failures,
                self._retry.attempts,
                delay,
                "; ".join(sorted(errors)),
            )

        try:
            self._retry.run(
                deliver,
                errors=(_Undelivered,),
                transient=always,
                on_failure=lambda exc, failures: self.on_failure(),
                on_retry=retrying,
            )
        except _Undelivered:
            raise DeadLetterError(
                f"{len(pending)} records could not be delivered to topic {self.topic!r} "
                f"after {self._retry.attempts} attempts: {'; '.join(sorted(errors))}"
            ) from None

    def _deliver(self, records: Sequence[Record]) -> list[tuple[Record, Any]]:
        failed: list[tuple[Record, Any]] = []

        def report(record: Record) -> Any:
            def on_delivery(error: KafkaError | None, _message: Any) -> None:
                if error is not None:
                    failed.append((record, error))

            return on_delivery

        for record in records:
            self._produce(record, report(record))
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining:
            raise DeadLetterError(
                f"{remaining} records to {self.topic!r} still unacknowledged after "
                f"{self._flush_timeout_s:.0f}s: is the broker reachable?"
            )
        return failed

    def _produce(self, record: Record, on_delivery: Any) -> None:
        key, value, headers = record
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                # Local queue full: let deliveries drain, then try again.
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise DeadLetterError(f"cannot produce to {self.topic!r}: {exc}") from exc


class DeadLetterProducer(ConfirmedProducer):
    """Rejections to the dead-letter topic."""

    def send(self, rejections: Sequence[Rejection]) -> None:
        """Deliver every rejection; raise DeadLetterError if impossible."""
        self.send_records(
            [
                (
                    dead_letter_key(r),
                    r.payload[:MAX_VALUE_BYTES],
                    dead_letter_headers(r),
                )
                for r in rejections
            ]
        )
