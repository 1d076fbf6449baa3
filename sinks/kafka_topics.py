"""Topic set-up shared by the producer command and the flow's dead-letter topic."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

# The admin package re-exports these without listing them in __all__.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
    NewTopic,
)

METADATA_TIMEOUT_S = 10.0


class TopicError(RuntimeError):
    """A topic could not be looked up or created; the message says what to check."""


def ensure_topic(
    admin: AdminClient, topic: str, partitions: int, replication: int
) -> tuple[int, bool]:
    """Create ``topic`` unless it exists: (its partition count, whether it was created)."""
    existing = partition_count(admin, topic)
    if existing is not None:
        return existing, False
    futures = admin.create_topics([NewTopic(topic, partitions, replication)])
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        # Another client may have created it in the meantime: then use theirs.
        if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise TopicError(f"cannot create topic {topic!r}: {error.str()}") from None
        return partition_count(admin, topic) or partitions, False
    return partitions, True


def partition_count(admin: AdminClient, topic: str) -> int | None:
    """Partitions of ``topic``, or None when it does not exist."""
    found = _metadata(admin).topics.get(topic)
    return len(found.partitions) if found is not None and found.error is None else None


def missing_topics(admin: AdminClient, topics: list[str]) -> list[str]:
    """Those of ``topics`` the cluster does not have."""
    existing = _metadata(admin).topics
    return [t for t in topics if t not in existing or existing[t].error is not None]


def _metadata(admin: AdminClient) -> ClusterMetadata:
    # Metadata of all topics: asking for one by name may auto-create it on the broker.
    try:
        return admin.list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise TopicError(
            f"cannot reach Kafka within {METADATA_TIMEOUT_S:.0f} s ({exc.args[0].str()}); "
            "check the brokers and the security settings"
        ) from None
