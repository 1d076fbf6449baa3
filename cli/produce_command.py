"""``meterwax produce``: send CloudEvents from a JSONL file or the generator to a Kafka topic.

The producing itself is ``sinks.kafka_producer``; this module reads the flags and prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from config.durations import format_duration_ms, parse_duration_ms
from config.settings import GeneratorSettings
from sinks.kafka_producer import (
    ProduceError,
    format_result,
    generator_spec,
    jsonl_payloads,
    masked,
    open_producer,
    producer_config,
    redact,
    send,
    synthetic_payloads,
)
from sinks.kafka_topics import TopicError, ensure_topic

_DEFAULT = "(default: %(default)s)"


def parse_kafka_setting(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` into a pair (argparse type); the error never repeats the text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        # Do not echo the argument: it may be a secret typed with the wrong separator.
        raise argparse.ArgumentTypeError("expected KEY=VALUE, e.g. security.protocol=SASL_SSL")
    return key.strip(), value


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
