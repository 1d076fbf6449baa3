"""Start-up checks of what a run reads, so a mistake is one line before the flow starts.

Without them a missing file is an engine panic, and an unreachable broker or a
missing topic shows up as pages of client logs, or as a run that reads nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from config.errors import ConfigError
from config.settings import KafkaSettings, Settings
from sinks.kafka_topics import TopicError, missing_topics

log = logging.getLogger(__name__)


class _DebugLog:
    """librdkafka's log lines for the check's client, at debug level (shown with -v)."""

    def log(self, level: int, message: str, *args: object) -> None:
        log.debug(message, *args)


def check_input(settings: Settings) -> None:
    """Raise ConfigError when the input cannot be read: no such file, no broker, no topic."""
    if settings.input.kind == "file":
        _check_file(settings.input.path)
    elif settings.input.kind == "kafka":
        _check_topics(settings.kafka)


def _check_file(path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise ConfigError(
            f"input.path: {path} does not exist; check the path (relative paths start at "
            f"{Path.cwd()})"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"input.path: cannot read {path} ({exc.strerror}); name a readable JSONL file"
        ) from None


def _check_topics(kafka: KafkaSettings) -> None:
    config: dict[str, Any] = {
        **kafka.client_config(),
        "bootstrap.servers": kafka.brokers,
        "logger": _DebugLog(),
    }
    try:
        missing = missing_topics(AdminClient(config), kafka.topics)
    except TopicError as exc:
        raise ConfigError(f"kafka.brokers ({kafka.brokers}): {exc}") from None
    if missing:
        names = ", ".join(repr(topic) for topic in missing)
        raise ConfigError(
            f"kafka.topics: {names} not found on {kafka.brokers}; fix the name, or create "
            "the topic (`meterwax produce` creates the one it writes)"
        )
