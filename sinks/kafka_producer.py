"""Send CloudEvents (JSONL payloads or the generator's) to a Kafka topic.

Each message is keyed by its event's ``subject`` (the tenant), so a tenant's
events stay in one partition, in order; payloads without a readable subject go
round-robin. Payloads are sent as they are: the flow, not the producer, decides
what is valid.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from config.settings import GeneratorSettings
from operators.synthetic import SyntheticPartition, SyntheticSpec

# Late events miss their window by more than the default grace (30 s) + window (1 m).
LATE_BY_MS = 90_000
SECRET_MARKERS = ("password", "secret", "key")
POLL_EVERY = 1_000
# librdkafka's own code for "no partition chosen": the partitioner picks one by key.
ANY_PARTITION = -1

PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 200_000,
    "compression.type": "lz4",
    # The Java client's partitioner: a tenant lands in the same partition whichever client sent it.
    "partitioner": "murmur2_random",
}


class ProduceError(RuntimeError):
    """The topic cannot be reached or set up; the message says what to check."""


@dataclass(frozen=True)
class ProduceResult:
    """What a produce run delivered."""

    sent: int
    bytes: int
    failed: int
    seconds: float
    first_error: str | None = None


class DeliveryTally:
    """Delivery callback that counts what arrived and what failed."""

    def __init__(self) -> None:
        self.sent = 0
        self.bytes = 0
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.sent += 1
            self.bytes += len(message)
        else:
            self.fail(error)

    def fail(self, error: KafkaError) -> None:
        """Count one message that will never arrive."""
        self.failed += 1
        self.first_error = self.first_error or error.str()


def is_secret(key: str) -> bool:
    """Whether the value of librdkafka setting ``key`` must never be printed."""
    return any(marker in key.lower() for marker in SECRET_MARKERS)


def masked(settings: Mapping[str, str]) -> str:
    """``settings`` as ``key=value`` pairs for display, secret values as ``***``."""
    return " ".join(f"{k}={'***' if is_secret(k) else v}" for k, v in settings.items())


def redact(text: str, settings: Mapping[str, str]) -> str:
    """``text`` (e.g. a librdkafka error) with every secret value of ``settings`` masked."""
    for key, value in settings.items():
        if value and is_secret(key):
            text = text.replace(value, "***")
    return text


def producer_config(brokers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """Batching defaults, overridden by ``extra`` (raw librdkafka settings), with ``brokers``."""
    return {**PRODUCER_DEFAULTS, **extra, "bootstrap.servers": brokers}


def open_producer(config: Mapping[str, Any]) -> Producer:
    """A producer with ``config``; uncompressed if this librdkafka was built without lz4."""
    try:
        return Producer(dict(config))
    except KafkaException as exc:
        if config.get("compression.type") != "lz4" or "compression" not in str(exc):
            raise
    return Producer({**config, "compression.type": "none"})


def subject_key(payload: bytes) -> bytes | None:
    """The event's ``subject`` as a message key; None when the payload has none to read."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    subject = event.get("subject") if isinstance(event, dict) else None
    return subject.encode() if isinstance(subject, str) and subject else None


def jsonl_payloads(path: Path) -> Iterator[bytes]:
    """The lines of a JSONL file without line endings; blank lines are skipped."""
    with path.open("rb") as lines:
        for line in lines:
            payload = line.rstrip(b"\r\n")
            if payload.strip():
                yield payload


def generator_spec(generator: GeneratorSettings, now_ms: int) -> SyntheticSpec:
    """The synthetic events of ``generator``, ending at ``now_ms`` so none lies in the future."""
    return SyntheticSpec(
        events=generator.events,
        tenants=generator.tenants,
        seed=generator.seed,
        start_ms=now_ms - generator.span,
        span_ms=generator.span,
        partitions=generator.partitions,
        duplicate_rate=generator.duplicate_rate,
        late_rate=generator.late_rate,
        late_by_ms=LATE_BY_MS,
        invalid_rate=generator.invalid_rate,
    )


def synthetic_payloads(spec: SyntheticSpec) -> Iterator[bytes]:
    """Every payload of ``spec``, partition after partition, duplicates where they occur."""
    for partition in range(spec.partitions):
        events = SyntheticPartition(spec, partition)
        for n in range(events.count):
            yield from events.payloads(n)


def send(
    producer: Producer, topic: str, payloads: Iterable[bytes], partitions: int
) -> ProduceResult:
    """Send ``payloads`` to ``topic`` and wait until each is delivered or has failed."""
    tally = DeliveryTally()
    round_robin = itertools.cycle(range(partitions))
    started = time.monotonic()
    for count, payload in enumerate(payloads, 1):
        key = subject_key(payload)
        partition = ANY_PARTITION if key is not None else next(round_robin)
        _produce(producer, topic, payload, key=key, partition=partition, tally=tally)
        if count % POLL_EVERY == 0:
            producer.poll(0)
    # flush() returns what is still queued; message.timeout.ms bounds the wait.
    tally.failed += producer.flush()
    return ProduceResult(
        tally.sent, tally.bytes, tally.failed, time.monotonic() - started, tally.first_error
    )


def _produce(
    producer: Producer,
    topic: str,
    payload: bytes,
    *,
    key: bytes | None,
    partition: int,
    tally: DeliveryTally,
) -> None:
    while True:
        try:
            producer.produce(topic, payload, key, partition=partition, on_delivery=tally)
            return
        except BufferError:
            # The local queue is full: serve delivery reports until there is room.
            producer.poll(0.1)
        except KafkaException as exc:
            # Refused before sending (e.g. larger than message.max.bytes).
            tally.fail(exc.args[0])
            return


def format_result(result: ProduceResult, topic: str) -> str:
    """The one-line summary of a produce run."""
    rate = result.sent / result.seconds if result.seconds > 0 else 0.0
    line = (
        f"sent {result.sent} messages ({result.bytes} bytes) to {topic!r} "
        f"in {result.seconds:.2f} s, {rate:,.0f} msg/s"
    )
    if result.failed:
        line += f"; {result.failed} FAILED, first error: {result.first_error}"
    return line
