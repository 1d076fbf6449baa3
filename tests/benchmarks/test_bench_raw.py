"""The raw ceiling reads the whole topic and is timed from its first message to its last."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from dataflows.bench_raw import measure

MESSAGES = 30_000


@pytest.mark.integration
def test_raw_ceiling_reads_everything_and_leaves_out_the_wait_for_the_first_message(
    kafka_brokers: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    producer = Producer({"bootstrap.servers": kafka_brokers, "linger.ms": 20})
    for n in range(MESSAGES):
        value = b"not json" if n % 1000 == 0 else b'{"n":%d}' % n
        producer.produce(topic, value, partition=n % 3)
        producer.poll(0)
    assert producer.flush(30) == 0

    started = time.perf_counter()
    run = measure(kafka_brokers, topic, 3)
    elapsed = time.perf_counter() - started

    assert (run.events, run.parsed) == (MESSAGES, MESSAGES - MESSAGES // 1000)
    # Assignment and the first fetch come before the clock starts.
    assert run.first_message_after_s > 0
    assert 0 < run.seconds <= elapsed - run.first_message_after_s
    assert run.events_per_s == pytest.approx(MESSAGES / run.seconds)
