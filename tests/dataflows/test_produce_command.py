"""``meterwax produce`` against the real broker, and its pure helpers."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from cli.main import main
from cli.produce_command import parse_kafka_setting
from config.clock import ShiftedClock
from config.settings import GeneratorSettings
from sinks.kafka_producer import (
    LATE_BY_MS,
    generator_spec,
    masked,
    redact,
    subject_key,
    synthetic_payloads,
)
from tests.clocks import CLOCK_OFFSETS

Record = tuple[int, bytes | None, bytes]


def read_topic(brokers: str, topic: str, timeout_s: float = 30.0) -> list[Record]:
    """Every message of ``topic`` as (partition, key, value), up to the end of each partition."""
    partitions = len(
        AdminClient({"bootstrap.servers": brokers}).list_topics(timeout=10).topics[topic].partitions
    )
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    records: list[Record] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, (
                f"partitions {at_end} of {partitions} read to the end"
            )
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
            elif error is not None:
                raise KafkaException(error)
            else:
                records.append((message.partition(), message.key(), message.value()))
    finally:
        consumer.close()
    return records


def partitions_by_key(records: list[Record]) -> dict[bytes, set[int]]:
    """The partitions each key's messages landed in."""
    found: dict[bytes, set[int]] = defaultdict(set)
    for partition, key, _ in records:
        if key is not None:
            found[key].add(partition)
    return found


def event(n: int, subject: str) -> str:
    """One valid CloudEvent as a JSONL line."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"e{n}",
            "source": "produce-test",
            "type": "api.request",
            "subject": subject,
            "time": "2026-11-21T13:59:02.120Z",
            "data": {"endpoint": "/v1/chat"},
        }
    ).decode()


def without_time(payload: bytes) -> bytes:
    """``payload`` with its event time removed, so runs at different clocks compare equal."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    if isinstance(data, dict):
        data.pop("time", None)
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


@pytest.mark.integration
def test_file_goes_to_a_new_topic_keyed_by_subject(
    kafka_brokers: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subjects = ["acme", "globex", "initech", "umbrella"] + [f"tenant-{n:06d}" for n in range(8)]
    lines = [event(n, subjects[n % len(subjects)]) for n in range(60)]
    lines += ["not json", '["an", "array"]']
    path = tmp_path / "events.jsonl"
    # Blank lines and CRLF endings are layout, not events.
    path.write_bytes(("\r\n".join(lines[:30]) + "\n\n  \n" + "\n".join(lines[30:]) + "\n").encode())
    topic = f"produce-{uuid.uuid4().hex[:12]}"

    code = main(
        [
            *("produce", "--brokers", kafka_brokers, "--topic", topic, "--partitions", "3"),
            *("--file", str(path)),
        ]
    )

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"created topic {topic!r} with 3 partitions" in captured.err
    assert captured.out.startswith(f"sent 62 messages ({sum(len(x) for x in lines)} bytes)")
    records = read_topic(kafka_brokers, topic)
    assert Counter(value for _, _, value in records) == Counter(x.encode() for x in lines)
    by_key = partitions_by_key(records)
    assert set(by_key) == {s.encode() for s in subjects}
    assert all(len(partitions) == 1 for partitions in by_key.values())
    assert {partition for partition, _, _ in records} == {0, 1, 2}
    unkeyed = [partition for partition, key, _ in records if key is None]
    # Round-robin: the two payloads without a subject go to different partitions.
    assert len(unkeyed) == len(set(unkeyed)) == 2


@pytest.mark.integration
@pytest.mark.parametrize("offset_ms", CLOCK_OFFSETS)
def test_generator_sends_every_synthetic_payload(
    kafka_brokers: str, capsys: pytest.CaptureFixture[str], offset_ms: int
) -> None:
    clock = ShiftedClock(offset_ms)
    topic = f"produce-{uuid.uuid4().hex[:12]}"
    rates = {"duplicate_rate": 0.05, "late_rate": 0.02, "invalid_rate": 0.02}
    flags = [f"--{name.replace('_', '-')}={rate}" for name, rate in rates.items()]
    before_ms = clock.now_ms()

    code = main(
        [
            *("produce", "--brokers", kafka_brokers, "--topic", topic, "--partitions", "3"),
            *("--generator", "--events", "3000", "--tenants", "30", "--seed", "11"),
            *("--span", "10m", *flags),
        ],
        clock=clock,
    )

    after_ms = clock.now_ms()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    settings = GeneratorSettings(events=3000, tenants=30, seed=11, span="10m", **rates)
    expected = list(synthetic_payloads(generator_spec(settings, now_ms=0)))
    assert len(expected) > 3000  # duplicates are extra messages
    assert captured.out.startswith(f"sent {len(expected)} messages")
    records = read_topic(kafka_brokers, topic)
    assert Counter(without_time(v) for _, _, v in records) == Counter(map(without_time, expected))
    assert all(len(partitions) == 1 for partitions in partitions_by_key(records).values())
    assert {partition for partition, _, _ in records} == {0, 1, 2}
    times = [event_time_ms(value) for _, _, value in records]
    known = [t for t in times if t is not None]
    # Generated times end at the clock's "now" (give or take the generator's 1.5 s jitter).
    assert max(known) <= after_ms + 1_500
    assert min(known) >= before_ms - 10 * 60_000 - LATE_BY_MS - 60_000 - 1_500


def event_time_ms(payload: bytes) -> int | None:
    """The ``time`` of a valid synthetic event in epoch milliseconds; None for broken payloads."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    text = data.get("time") if isinstance(data, dict) else None
    return int(datetime.fromisoformat(text).timestamp() * 1000) if text else None


@pytest.mark.integration
def test_an_existing_topic_is_kept(
    kafka_brokers: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = new_topic(partitions=2)
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(event(n, f"t{n}") for n in range(40)) + "\n")

    code = main(
        [
            *("produce", "--brokers", kafka_brokers, "--topic", topic, "--partitions", "5"),
            *("--file", str(path)),
        ]
    )

    assert code == 0
    assert f"topic {topic!r} exists with 2 partitions; kept as it is" in capsys.readouterr().err
    records = read_topic(kafka_brokers, topic)
    assert len(records) == 40
    assert {partition for partition, _, _ in records} == {0, 1}


@pytest.mark.integration
def test_undeliverable_message_is_counted_and_exits_1(
    kafka_brokers: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(event(1, "acme") + "\n" + '{"padding": "' + "x" * 5_000 + '"}\n')
    topic = f"produce-{uuid.uuid4().hex[:12]}"

    code = main(
        [
            *("produce", "--brokers", kafka_brokers, "--topic", topic, "--file", str(path)),
            *("--kafka-config", "message.max.bytes=2000"),
        ]
    )

    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("sent 1 messages")
    assert "1 FAILED, first error:" in out
    assert len(read_topic(kafka_brokers, topic)) == 1


@pytest.mark.integration
def test_secret_settings_are_never_printed(
    kafka_brokers: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(event(1, "acme") + "\n")
    topic = f"produce-{uuid.uuid4().hex[:12]}"

    code = main(
        [
            *("produce", "--brokers", kafka_brokers, "--topic", topic, "--file", str(path)),
            *(
                "--kafka-config",
                "client.id=meterwax-test",
                "--kafka-config",
                "sasl.password=hunter2",
            ),
        ]
    )

    captured = capfd.readouterr()
    assert code == 0, captured.err
    assert "kafka config: client.id=meterwax-test sasl.password=***" in captured.err
    assert "hunter2" not in captured.out + captured.err


def test_invalid_setting_exits_2_naming_it_and_no_secret(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(event(1, "acme") + "\n")

    code = main(
        [
            *("produce", "--topic", "t", "--file", str(path)),
            *("--kafka-config", "sasl.password=hunter2", "--kafka-config", "acks=sometimes"),
        ]
    )

    captured = capfd.readouterr()
    assert code == 2
    assert 'Invalid value for configuration property "request.required.acks"' in captured.err
    assert "Traceback" not in captured.err
    assert "hunter2" not in captured.out + captured.err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["produce", "--topic", "t", "--file", str(tmp_path / "nope.jsonl")])
    assert code == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        (b'{"subject":"acme","id":"1"}', b"acme"),
        ('{"subject":"zürich"}'.encode(), "zürich".encode()),
        (b'{"subject":""}', None),
        (b'{"subject":42}', None),
        (b'{"id":"1"}', None),
        (b'["subject"]', None),
        (b'{"subject":"acme"', None),
        (b"\xff\xfe", None),
    ],
)
def test_subject_key(payload: bytes, key: bytes | None) -> None:
    assert subject_key(payload) == key


def test_kafka_setting_parsing_and_masking() -> None:
    assert parse_kafka_setting("security.protocol=SASL_SSL") == ("security.protocol", "SASL_SSL")
    assert parse_kafka_setting("sasl.jaas=a=b") == ("sasl.jaas", "a=b")
    settings = {"security.protocol": "SASL_SSL", "sasl.password": "pw1", "ssl.key.pem": "pem"}
    assert masked(settings) == "security.protocol=SASL_SSL sasl.password=*** ssl.key.pem=***"
    assert (
        redact('bad value "pw1" for "sasl.password"', settings)
        == 'bad value "***" for "sasl.password"'
    )


def test_malformed_kafka_setting_is_refused_without_echo(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["produce", "--topic", "t", "--generator", "--kafka-config", "sasl.password:hunter2"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "expected KEY=VALUE" in err
    assert "hunter2" not in err
