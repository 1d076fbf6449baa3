"""``meterwax produce``: send CloudEvents from a JSONL file or the generator to a Kafka topic.

Each message is keyed by its event's ``subject`` (the tenant), so a tenant's
events stay in one partition, in order; payloads without a readable subject go
round-robin. Payloads are sent as they are: the flow, not the producer, decides
what is valid.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from config.durations import format_duration_ms, parse_duration_ms
from config.settings import GeneratorSettings
from dataflows.kafka_topics import TopicError, ensure_topic
from dataflows.synthetic import SyntheticPartition, SyntheticSpec

# Late events miss their window by more than the default grace (30 s) + window (1 m).
LATE_BY_MS = 90_000
SECRET_MARKERS = ("password", "secret", "key")
POLL_EVERY = 1_000
_DEFAULT = "(default: %(default)s)"
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


def parse_kafka_setting(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` into a pair (argparse type); the error never repeats the text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        # Do not echo the argument: it may be a secret typed with the wrong separator.
        raise argparse.ArgumentTypeError("expected KEY=VALUE, e.g. security.protocol=SASL_SSL")
    return key.strip(), value


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


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number of at least {minimum}"
            )
        return value

    return parse


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return value


def _duration_ms(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``produce`` to the ``meterwax`` parser."""
    defaults = GeneratorSettings()
    produce = sub.add_parser(
        "produce",
        help="send CloudEvents from a JSONL file or the generator to a Kafka topic",
        description="Send events to a Kafka topic, keyed by subject (tenant). Exits 1 if any "
        "message was not delivered, 2 if the topic cannot be reached or created.",
    )
    produce.add_argument(
        "--brokers",
        default="127.0.0.1:9092",
        help="host:port[,host:port...] (default: %(default)s)",
    )
    produce.add_argument("--topic", required=True)
    produce.add_argument(
        "--partitions",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="partitions if the topic is created; an existing topic is kept (default: 1)",
    )
    produce.add_argument(
        "--replication-factor",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="if created (default: 1)",
    )
    produce.add_argument(
        "--kafka-config",
        type=parse_kafka_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="raw librdkafka setting, repeatable (e.g. security.protocol=SASL_SSL)",
    )
    source = produce.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="JSONL file, one event per line")
    source.add_argument("--generator", action="store_true", help="synthetic events")
    gen = produce.add_argument_group("generator options (with --generator)")
    gen.add_argument(
        "--events", type=_int_at_least(0), default=defaults.events, metavar="N", help=_DEFAULT
    )
    gen.add_argument(
        "--tenants", type=_int_at_least(1), default=defaults.tenants, metavar="N", help=_DEFAULT
    )
    gen.add_argument("--seed", type=int, default=defaults.seed, metavar="N", help=_DEFAULT)
    for flag in ("--duplicate-rate", "--late-rate", "--invalid-rate"):
        field = flag[2:].replace("-", "_")
        gen.add_argument(
            flag, type=_rate, default=getattr(defaults, field), metavar="SHARE", help=_DEFAULT
        )
    gen.add_argument(
        "--span",
        type=_duration_ms,
        default=defaults.span,
        metavar="DURATION",
        help="event times cover this long up to now, e.g. 10m "
        f"(default: {format_duration_ms(defaults.span)})",
    )


def _payloads(args: argparse.Namespace) -> Iterable[bytes]:
    if args.file is not None:
        if not args.file.is_file():
            raise ProduceError(f"--file {args.file}: no such file")
        return jsonl_payloads(args.file)
    # The flags are checked already; model_copy keeps the span in milliseconds.
    generator = GeneratorSettings().model_copy(
        update={
            "events": args.events,
            "tenants": args.tenants,
            "seed": args.seed,
            "duplicate_rate": args.duplicate_rate,
            "late_rate": args.late_rate,
            "invalid_rate": args.invalid_rate,
            "span": args.span,
        }
    )
    return synthetic_payloads(generator_spec(generator, args.clock.now_ms()))


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax produce``: 0 if every message arrived, 1 if any failed, 2 on setup errors."""
    extra = dict(args.kafka_config)
    if extra:
        print(f"kafka config: {masked(extra)}", file=sys.stderr)
    try:
        payloads = _payloads(args)
        admin = AdminClient({**extra, "bootstrap.servers": args.brokers})
        partitions, created = ensure_topic(
            admin, args.topic, args.partitions, args.replication_factor
        )
        if created:
            print(f"created topic {args.topic!r} with {partitions} partitions", file=sys.stderr)
        else:
            print(
                f"topic {args.topic!r} exists with {partitions} partitions; kept as it is",
                file=sys.stderr,
            )
        producer = open_producer(producer_config(args.brokers, extra))
        result = send(producer, args.topic, payloads, partitions)
    except KafkaException as exc:
        print(f"meterwax produce: {redact(exc.args[0].str(), extra)}", file=sys.stderr)
        return 2
    except (ProduceError, TopicError, OSError) as exc:
        print(f"meterwax produce: {exc}", file=sys.stderr)
        return 2
    print(format_result(result, args.topic))
    return 1 if result.failed else 0
