"""The HTTP ingest's producer: accepted events to the input topic, each delivery awaited.

``acks=all`` and ``enable.idempotence``: a message the broker acknowledged is on
every in-sync replica, and librdkafka's retries never write it twice. A poll
thread serves delivery reports; each request waits (asyncio) until every one of
its events is delivered or has failed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from sinks.kafka_producer import open_producer, producer_config, redact

INGEST_DEFAULTS: dict[str, Any] = {
    # What makes an acknowledged event durable and its retries harmless.
    "acks": "all",
    "enable.idempotence": True,
    # A request waits for its deliveries: keep the batching delay short.
    "linger.ms": 5,
    "message.timeout.ms": 30_000,
}
# Settings the ingest cannot work without: a config file cannot weaken them.
_REQUIRED = {"acks": "all", "enable.idempotence": True}


class IngestUnavailable(Exception):
    """Kafka did not take the events; the message never holds a secret."""


class _Pending:
    """The deliveries one request waits for: one callback for all of them, no object per event."""

    __slots__ = ("_events", "_lock", "_loop", "done", "failed", "left")

    def __init__(self, loop: asyncio.AbstractEventLoop, events: Sequence[tuple[bytes, bytes]]):
        self._loop = loop
        self._events = events
        self.done: asyncio.Future[None] = loop.create_future()
        self._lock = threading.Lock()
        # One more than the events: the request holds it until it has produced them all.
        self.left = len(events) + 1
        # Payload -> failure: a delivery report carries no position. Equal payloads in one
        # request share their fate; a retry of one delivered is dropped as a duplicate.
        self.failed: dict[bytes, str] = {}

    def settle(self, error: KafkaError | None, message: Message | None) -> None:
        """A delivery report (poll thread), or the request's own release (``message`` None)."""
        if error is not None and message is not None:
            self.failed[message.value() or b""] = error.str()
        with self._lock:
            self.left -= 1
            last = self.left == 0
        if last:
            self._loop.call_soon_threadsafe(self._finish)

    def failures(self) -> dict[int, str]:
        """The failed deliveries by position in the request's events."""
        if not self.failed:
            return {}
        return {
            index: self.failed[payload]
            for index, (_, payload) in enumerate(self._events)
            if payload in self.failed
        }

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class IngestProducer:
    """Produces accepted events keyed by subject; one instance per process, thread-safe."""

    def __init__(self, brokers: str, topic: str, extra: Mapping[str, str]) -> None:
        self.topic = topic
        self._extra = dict(extra)
        config = {**producer_config(brokers, {**INGEST_DEFAULTS, **extra}), **_REQUIRED}
        try:
            self._producer = open_producer(config)
        except KafkaException as exc:
            raise IngestUnavailable(
                f"cannot create the Kafka producer: {self._text(exc)}"
            ) from None
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="ingest-deliveries", daemon=True)
        self._poller.start()

    async def send(self, events: Sequence[tuple[bytes, bytes]]) -> dict[int, str]:
        """Produce ``events`` ((key, payload) pairs) and wait for every delivery.

        Returns the failures, by position in ``events`` (empty when all arrived).
        """
        if not events:
            return {}
        pending = _Pending(asyncio.get_running_loop(), events)
        produce, topic, settle = self._producer.produce, self.topic, pending.settle
        for key, payload in events:
            while True:
                try:
                    produce(topic, payload, key, on_delivery=settle)
                    break
                except BufferError:
                    # The local queue is full: let the poll thread drain it.
                    await asyncio.sleep(0.002)
                except KafkaException as exc:
                    error: KafkaError = exc.args[0]
                    pending.failed[payload] = error.str()
                    settle(None, None)
                    break
        settle(None, None)
        await pending.done
        return pending.failures()

    def check(self, timeout_s: float = 2.0) -> None:
        """Raise IngestUnavailable unless the broker answers and knows the topic."""
        try:
            metadata = self._producer.list_topics(self.topic, timeout=timeout_s)
        except KafkaException as exc:
            raise IngestUnavailable(f"Kafka: {self._text(exc)}") from None
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise IngestUnavailable(f"Kafka: topic {self.topic!r} is not available")

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``) and stop the poll thread."""
        self._producer.flush(timeout_s)
        self._stop.set()
        self._poller.join(timeout=timeout_s)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _text(self, exc: KafkaException) -> str:
        return redact(str(exc.args[0].str() if exc.args else exc), self._extra)
