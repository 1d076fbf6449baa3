"""The raw ceiling of ``meterwax bench``: how fast one process can merely read and parse a topic.

confluent-kafka ``consume(num_messages=10000)`` plus ``orjson.loads`` of each
value and nothing else, ``fetch.queue.backoff.ms=10``, timed from the first
message to the last (partition assignment and the first fetch are not
counted, as the flow's processing time does not count its start-up either).
``meterwax bench`` runs it in a process of its own:

    python -m dataflows.bench_raw --brokers 127.0.0.1:9092 --topic T --partitions 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

BATCH = 10_000
POLL_TIMEOUT_S = 1.0
# A topic that stops delivering before its end: the measurement fails, it does not hang.
STALL_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class RawRun:
    """One raw pass over a topic."""

    events: int
    parsed: int
    seconds: float
    events_per_s: float
    # From assignment to the first message (not part of ``seconds``).
    first_message_after_s: float


def measure(brokers: str, topic: str, partitions: int) -> RawRun:
    """Read ``topic`` from its start to its end; raise RuntimeError if the broker fails."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"meterwax-bench-raw-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "fetch.queue.backoff.ms": "10",
        }
    )
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    assigned = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    read = parsed = 0
    first = last = 0.0
    heard = assigned
    open_partitions = set(range(partitions))
    try:
        while open_partitions:
            messages = consumer.consume(BATCH, POLL_TIMEOUT_S)
            now = time.perf_counter()
            if not messages:
                if now - heard > STALL_TIMEOUT_S:
                    raise RuntimeError(
                        f"raw consumer: nothing from {topic!r} for {STALL_TIMEOUT_S:.0f} s "
                        f"after {read:,} messages"
                    )
                continue
            heard = now
            for msg in messages:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(msg.partition())
                        continue
                    raise RuntimeError(f"raw consumer: {error}")
                if not read:
                    first = now
                read += 1
                try:
                    loads(msg.value() or b"")
                except decode_error:
                    continue
                parsed += 1
            if read:
                last = time.perf_counter()
    finally:
        consumer.close()
    seconds = last - first
    return RawRun(
        events=read,
        parsed=parsed,
        seconds=seconds,
        events_per_s=read / seconds if seconds > 0 else 0.0,
        first_message_after_s=(first - assigned) if read else 0.0,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m dataflows.bench_raw``: one pass, printed as JSON; 1 if the broker failed."""
    parser = argparse.ArgumentParser(prog="python -m dataflows.bench_raw", description=__doc__)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        run = measure(args.brokers, args.topic, args.partitions)
    except (RuntimeError, KafkaException) as exc:
        print(f"bench_raw: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
