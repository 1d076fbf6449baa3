"""Kafka input through Bytewax's Kafka connector, emitting one batch per poll.

Bytewax's ``KafkaSource`` owns partition discovery, offset resume from
recovery snapshots and consumer settings; its per-message items would cost an
engine round trip per event, so each poll here becomes ONE item: a
MessageBatch, the columns of one Kafka partition's messages.
"""

from __future__ import annotations

import logging
from array import array
from typing import Any, cast

import orjson
from bytewax.connectors.kafka import KafkaSource
from bytewax.connectors.kafka import _KafkaSourcePartition as _ConnectorPartition
from confluent_kafka import KafkaError, Message

from dataflows.metrics import METRICS
from dataflows.shutdown import StopRequest
from dataflows.sources import Batch
from operators.message_batch import MessageBatch

log = logging.getLogger(__name__)


class KafkaBatchSource(KafkaSource):
    """Kafka topics as batches of RawMessage (origin = topic, offset = Kafka offset).

    ``add_config`` holds client settings for every Kafka client (security);
    ``consumer_config`` only what the consumers take (the admin client used to
    list partitions would warn about consumer-only properties). Once ``stop`` is
    requested, every partition ends at its next poll.
    """

    def __init__(
        self,
        *args: Any,
        consumer_config: dict[str, str] | None = None,
        stop: StopRequest | None = None,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self._consumer_config = consumer_config or {}
        self._stop = stop or StopRequest()

    def input_partitions(self) -> list[tuple[str, int]]:
        """(topic, partition) of every partition of the topics, as RawMessage names them."""
        parts = []
        for part in self.list_parts():
            idx, topic = part.split("-", 1)
            parts.append((topic, int(idx)))
        return parts

    def consumer_settings(self) -> dict[str, Any]:
        """What each partition's consumer runs with: the settings below, then
        ``consumer_config`` (defaults), then ``add_config``: the user's settings win."""
        config: dict[str, Any] = {
            # Offsets live in Bytewax's recovery snapshots, not in a consumer group.
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail),
            "statistics.interval.ms": 1000,
            # Prefetch per partition (librdkafka's default is 64 MiB): 16 MiB is
            # seconds of input at full speed, and ~100 MiB less peak memory over
            # 4 partitions. kafka.config overrides it.
            "queued.max.messages.kbytes": 16384,
        }
        config.update(self._consumer_config)
        config.update(self._add_config)
        return config

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _BatchPartition:
        """The connector's partition, re-typed to emit batches."""
        idx, topic = for_part.split("-", 1)
        if topic not in self._topics:
            raise ValueError(
                f"recovery state is for topic {topic!r}, not one of {list(self._topics)}: "
                "use a fresh recovery directory when changing topics"
            )
        config = self.consumer_settings()
        return _BatchPartition(
            step_id,
            config,
            topic,
            int(idx),
            self._starting_offset,
            resume_state,
            self._batch_size,
            True,
            stop=self._stop,
        )


class _BatchPartition(_ConnectorPartition):
    def __init__(self, *args: Any, stop: StopRequest) -> None:
        super().__init__(*args)
        self._stop = stop

    def _process_stats(self, json_stats: str) -> None:
        # librdkafka's statistics (every statistics.interval.ms): the partition's
        # high watermark from fetch responses, so no extra request to the broker.
        # Replaces the connector's own lag gauge, which would parse them a second time.
        stats = orjson.loads(json_stats)
        part = stats["topics"].get(self._topic, {}).get("partitions", {}).get(str(self._part_idx))
        if part is not None and self._offset >= 0 and part.get("hi_offset", -1) >= 0:
            METRICS.consumer_lag.labels(self._topic, str(self._part_idx)).set(
                max(0, part["hi_offset"] - self._offset)
            )

    # The connector's partition is reused for its consumer handling; it emits our
    # batches instead of its messages, which its generic types cannot say.
    def next_batch(self) -> list[Batch]:  # type: ignore[override]
        # A stop ends the partition like the end of the topic: the engine snapshots
        # its offset, the next message to read.
        if self._eof or self._stop.requested:
            raise StopIteration
        messages = self._consumer.consume(self._batch_size, 0.001)
        # Errors and the end of the partition are rare: the common poll is read
        # column by column, without a Python object per message.
        # (By identity: KafkaError's == does not take None.)
        if any(m.error() is not None for m in messages):
            messages = self._data_messages(messages)
        if not messages:
            return []
        # Data messages always have an offset. A tombstone's value is None. Timestamps:
        # producer create time or broker append time, as the topic is configured.
        offsets = array("q", cast("list[int]", [m.offset() for m in messages]))
        self._offset = offsets[-1] + 1
        return [
            MessageBatch.of_payloads(
                self._topic,
                self._part_idx,
                [m.value() or b"" for m in messages],
                offsets,
                array("q", [m.timestamp()[1] for m in messages]),
            )
        ]

    def _data_messages(self, messages: list[Message]) -> list[Message]:
        """The messages that carry data, up to the end of the partition; errors logged."""
        topic, partition = self._topic, self._part_idx
        kept = []
        for msg in messages:
            error = msg.error()
            if error is None:
                # Only error events lack an offset.
                if msg.offset() is not None:
                    kept.append(msg)
                continue
            if error.code() == KafkaError._PARTITION_EOF:
                self._eof = True
                break
            if error.fatal():
                raise RuntimeError(f"Kafka consumer failed on {topic}[{partition}]: {error}")
            # librdkafka retries transient errors itself; they are reported for logging.
            log.warning("Kafka %s[%d]: %s", topic, partition, error)
        return kept
