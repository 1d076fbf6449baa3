"""Run-time settings: defaults < config file < ``METERWAX_*`` environment < CLI flags.

Everything is validated once, at start-up; a bad value stops the run with a
message naming where it came from, the field and the fix. Secrets (passwords
inside DSNs and URLs, secret Kafka properties) are masked whenever settings are
printed, and remembered so that no message shows them (config/redaction.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.durations import format_duration_ms, parse_duration_ms
from config.errors import ConfigError
from config.redaction import MASK, is_secret_setting, redact_url, remember, url_secrets
from config.webhooks import WebhookSettings

DurationMs = Annotated[int, BeforeValidator(parse_duration_ms), Field(ge=0)]

EXAMPLES = Path(str(resources.files("config") / "examples"))

# The config file's contents while load_settings() builds a Settings: the file is
# a settings source of its own so that the environment can override it.
_FILE_LAYER: ContextVar[dict[str, Any] | None] = ContextVar("meterwax_file_layer", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Messages per input batch (per Kafka poll, per file read): per-batch costs (engine
# items, step calls, sink buffers) fall with larger batches; a poll returns what
# is there, so a slow topic still gives small batches and no added latency.
# 4,000 measured ~9% faster than 1,000 (W1 lean, native, two interleaved pairs).
DEFAULT_BATCH_SIZE = 4_000


class InputSettings(_Section):
    """Where events come from."""

    kind: Literal["file", "generator", "kafka"] = "file"
    path: Path = EXAMPLES / "events.jsonl"
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, le=100_000)


class GeneratorSettings(_Section):
    """The built-in generator of realistic synthetic events."""

    events: int = Field(100_000, ge=0)
    tenants: int = Field(50, ge=1)
    seed: int = 7
    partitions: int = Field(1, ge=1, le=1024)
    rate: float = Field(0.0, ge=0, description="events/s over all partitions; 0 = unlimited")
    duplicate_rate: float = Field(0.02, ge=0, le=1)
    late_rate: float = Field(0.01, ge=0, le=1)
    invalid_rate: float = Field(0.005, ge=0, le=1)
    span: DurationMs = parse_duration_ms("1h")


class WindowSettings(_Section):
    """Event-time windowing and lateness."""

    size: DurationMs = parse_duration_ms("1m")
    grace: DurationMs = parse_duration_ms("30s")
    idle_timeout: DurationMs = parse_duration_ms("10s")
    settlement_horizon: DurationMs = parse_duration_ms("1h")
    # None: as long as the settlement horizon, so that no accepted late event can
    # be a forgotten duplicate even without the Redis layer.
    dedup_horizon: DurationMs | None = None
    max_future_skew: DurationMs = parse_duration_ms("5m")

    @model_validator(mode="after")
    def _check(self) -> WindowSettings:
        if self.size < 1_000:
            raise ValueError("size must be at least 1s")
        if self.settlement_horizon < self.grace:
            raise ValueError(
                f"settlement_horizon ({format_duration_ms(self.settlement_horizon)}) must be "
                f"at least grace ({format_duration_ms(self.grace)})"
            )
        return self

    @property
    def effective_dedup_horizon(self) -> int:
        """The dedup horizon in ms, defaulting to the settlement horizon."""
        return self.settlement_horizon if self.dedup_horizon is None else self.dedup_horizon


class CatalogSettings(_Section):
    """Meter and pricing catalog files."""

    meters: Path = EXAMPLES / "meters.yaml"
    pricing: Path = EXAMPLES / "pricing.yaml"


class ClickHouseSettings(_Section):
    """Where rated windows go."""

    dsn: SecretStr = SecretStr("chdb://./data/clickhouse")
    database: str = Field("meterwax", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    # Transient errors (server down, overloaded) are retried this many times with
    # backoff doubling up to 15 s: the default rides out an outage of ~6 minutes,
    # while input waits. Then the flow stops; recovery resumes it later.
    max_attempts: int = Field(30, ge=1)
    # Keep every accepted event in accepted_events (what `meterwax reconcile` reads).
    event_log: bool = True
    # In-process chDB only: a GROUP BY holding more than this many bytes spills to
    # disk (max_bytes_before_external_group_by; 0 never spills). The end-of-run
    # summary aggregates every stored window, which otherwise peaks near 1 GB of
    # this process's memory at ~400k windows. A server applies its own profile.
    chdb_group_by_spill_bytes: int = Field(128 * 2**20, ge=0)


class FlowSettings(_Section):
    """Engine-side knobs, and the cluster this process belongs to."""

    shards: int = Field(8, ge=1, le=4096)
    # Where parse, split, dedup, windows, claims, live usage and the event log rows
    # are computed: the Python operators (the specification) or the native core.
    engine: Literal["python", "native"] = "python"
    max_event_bytes: int = Field(65_536, ge=256, le=16 * 1024 * 1024)
    workers: int = Field(1, ge=1, le=256)
    process_id: int | None = Field(None, ge=0)
    addresses: list[str] = Field(default_factory=list)
    # Redis claims name the flow by this id; by default it is kept in the recovery
    # directory. Set it (the same on every process) when processes do not share one.
    instance_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    # Live counters are published at most this often: shorter costs Redis round
    # trips, longer delays quota checks.
    live_publish_interval: DurationMs = parse_duration_ms("200ms")
    # The output lease (with redis.url): renewed every third of it; a crashed
    # flow's lease passes on to another flow this long after its last renewal.
    lease_ttl: DurationMs = parse_duration_ms("30s")
    # A ClickHouse server without Redis has no lease: say that one flow runs.
    single_writer_unchecked: bool = False

    @model_validator(mode="after")
    def _check_cluster(self) -> FlowSettings:
        if (self.process_id is None) != (not self.addresses):
            raise ValueError("process_id and addresses go together: set both or neither")
        if self.process_id is not None and self.process_id >= len(self.addresses):
            raise ValueError(
                f"process_id {self.process_id} has no address: addresses lists "
                f"{len(self.addresses)} processes (ids 0..{len(self.addresses) - 1})"
            )
        return self

    @model_validator(mode="after")
    def _check_lease(self) -> FlowSettings:
        if not 1_000 <= self.lease_ttl <= 600_000:
            raise ValueError("lease_ttl must be between 1s and 10m")
        return self

    @property
    def is_primary(self) -> bool:
        """Process 0 (or a single process) owns the sinks, migrations and the summary."""
        return not self.process_id


class KafkaSettings(_Section):
    """Kafka input and the dead-letter topic. ``config`` goes to librdkafka as is."""

    brokers: str = "127.0.0.1:9092"
    topics: list[str] = Field(default_factory=lambda: ["usage-events"], min_length=1)
    starting_offset: Literal["earliest", "latest"] = "earliest"
    # False: stop at the end of the topics (for backfills and tests); True: keep reading.
    tail: bool = True
    # Rejected events go here; None turns the dead-letter topic off. It is on by
    # default for Kafka input and off for files and the generator unless set.
    dead_letter_topic: str | None = "meterwax-dead-letters"
    dead_letters: bool | None = None
    # Quota events (thresholds and limits reached); on like dead letters when set.
    quota_topic: str | None = "meterwax-quota-events"
    quota_events: bool | None = None
    # Properties whose name says password, secret, key or token are masked when printed.
    config: dict[str, str] = Field(default_factory=dict)
    # Secret librdkafka settings (e.g. sasl.password): masked when printed.
    secret_config: dict[str, SecretStr] = Field(default_factory=dict)
    # Secret settings read from files at start-up (e.g. a mounted Kubernetes secret).
    secret_files: dict[str, Path] = Field(default_factory=dict)

    def client_config(self) -> dict[str, str]:
        """Everything librdkafka needs, secrets included (never log the result)."""
        merged = dict(self.config)
        merged.update({k: v.get_secret_value() for k, v in self.secret_config.items()})
        for key, path in self.secret_files.items():
            try:
                merged[key] = path.read_text(encoding="utf-8").strip()
                remember([merged[key]])
            except OSError as exc:
                raise ConfigError(
                    f"kafka.secret_files.{key}: cannot read {path} ({exc.strerror}); "
                    "check the path and permissions"
                ) from None
        return merged


class RedisSettings(_Section):
    """The durable idempotency layer; off when ``url`` is unset."""

    url: SecretStr | None = None
    password_file: Path | None = None
    ttl: DurationMs = parse_duration_ms("35d")
    key_prefix: str = Field("meterwax", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")

    def password(self) -> str | None:
        """The password from ``password_file``, if one is set."""
        if self.password_file is None:
            return None
        try:
            password = self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"redis.password_file: cannot read {self.password_file} ({exc.strerror}); "
                "check the path and permissions"
            ) from None
        remember([password])
        return password


class RecoverySettings(_Section):
    """Bytewax recovery: snapshots of all state and input positions."""

    directory: Path | None = None
    snapshot_interval: DurationMs = parse_duration_ms("10s")
    # Keep superseded snapshots this long (set it to your backup interval).
    backup_interval: DurationMs = 0
    partitions: int = Field(1, ge=1, le=1024)

    @model_validator(mode="after")
    def _check(self) -> RecoverySettings:
        if self.snapshot_interval < 100:
            raise ValueError("snapshot_interval must be at least 100ms")
        return self


class MetricsSettings(_Section):
    """The Prometheus endpoint; off unless ``port`` is set."""

    # Each process of a cluster serves on port + process_id, so several can share a host.
    port: int | None = Field(None, ge=1, le=65_535)
    # All interfaces: Prometheus scrapes from another host or container.
    host: str = Field("0.0.0.0", min_length=1)


class ApiSettings(_Section):
    """The HTTP API (``meterwax api serve``, ``meterwax run --api-port``)."""

    keys_file: Path | None = None
    # `meterwax run` serves the API from its own process when set (0: any free port).
    port: int | None = Field(None, ge=0, le=65_535)
    host: str = Field("127.0.0.1", min_length=1)
    # POST /v1/events: the largest body and the most events in one request.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    max_batch_events: int = Field(10_000, ge=1, le=100_000)
    # The customer usage page (/portal): the secret that signs portal tokens
    # (`meterwax api portal-token`; unset: only tenants' read keys open the page),
    # and the origins allowed to embed it in a frame (CSP frame-ancestors).
    portal_secret_file: Path | None = None
    portal_frame_ancestors: str = Field("'self'", min_length=1, pattern=r"^[^;\r\n]+$")


class Settings(BaseSettings):
    """Everything a run needs, validated together."""

    model_config = SettingsConfigDict(
        env_prefix="METERWAX_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    input: InputSettings = InputSettings()
    generator: GeneratorSettings = GeneratorSettings()
    window: WindowSettings = WindowSettings()
    catalogs: CatalogSettings = CatalogSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    flow: FlowSettings = FlowSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    recovery: RecoverySettings = RecoverySettings()
    metrics: MetricsSettings = MetricsSettings()
    webhooks: WebhookSettings = WebhookSettings()
    api: ApiSettings = ApiSettings()

    @model_validator(mode="after")
    def _check_webhooks(self) -> Settings:
        if self.webhooks.endpoints and self.redis.url is None:
            raise ConfigError(
                "webhooks.endpoints need redis.url: quota and spend webhooks come from live "
                "usage, and the delivery queue is kept in Redis; set redis.url"
            )
        w, horizon = self.webhooks, self.window.settlement_horizon
        closing = any("period.closed" in e.events for e in w.endpoints)
        if closing and w.period_closed_after < horizon:
            # Late events adjust a period until then: period.closed would not be final.
            raise ConfigError(
                f"webhooks.period_closed_after ({format_duration_ms(w.period_closed_after)}) "
                f"must be at least window.settlement_horizon ({format_duration_ms(horizon)}): "
                "late events change a period's usage until then; raise period_closed_after"
            )
        return self

    @property
    def quota_events_enabled(self) -> bool:
        """Whether quota events go to the Kafka quota topic (they need live usage: Redis)."""
        if self.kafka.quota_topic is None or self.redis.url is None:
            return False
        if self.kafka.quota_events is None:
            return self.input.kind == "kafka"
        return self.kafka.quota_events

    @property
    def dead_letters_enabled(self) -> bool:
        """Whether rejections also go to the Kafka dead-letter topic."""
        if self.kafka.dead_letter_topic is None:
            return False
        if self.kafka.dead_letters is None:
            return self.input.kind == "kafka"
        return self.kafka.dead_letters

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI flags arrive as init kwargs and win over the environment, which wins
        # over the config file.
        return (init_settings, env_settings, _FileSettingsSource(settings_cls))

    def secrets(self) -> list[str]:
        """Every secret the settings hold (those in files are remembered when read)."""
        found = url_secrets(self.clickhouse.dsn.get_secret_value())
        if self.redis.url is not None:
            found += url_secrets(self.redis.url.get_secret_value())
        found += [value.get_secret_value() for value in self.kafka.secret_config.values()]
        found += [value for key, value in self.kafka.config.items() if is_secret_setting(key)]
        return found + self.webhooks.secrets()

    def masked(self) -> dict[str, Any]:
        """Settings as plain data with secrets masked, for logs and ``--print-config``."""
        data = self.model_dump(mode="json")
        secrets = self.secrets()
        data["clickhouse"]["dsn"] = redact_url(self.clickhouse.dsn.get_secret_value(), secrets)
        if self.redis.url is not None:
            data["redis"]["url"] = redact_url(self.redis.url.get_secret_value(), secrets)
        data["kafka"]["config"] = {
            key: MASK if is_secret_setting(key) else value
            for key, value in self.kafka.config.items()
        }
        for endpoint in data["webhooks"]["endpoints"]:
            endpoint["url"] = redact_url(endpoint["url"], secrets)
        return data


class _FileSettingsSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_FILE_LAYER.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_LAYER.get() or {})


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the config file ({exc.strerror}); check the path"
        ) from None
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections like 'window:'")
    return data


def _format_errors(origin: str, error: ValidationError) -> str:
    lines = [f"{origin}: invalid settings:"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        hint = " (unknown setting: check the spelling)" if item["type"] == "extra_forbidden" else ""
        lines.append(f"  {where}: {item['msg']}{hint}")
    return "\n".join(lines)


def load_settings(
    config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Load settings from defaults, an optional YAML file, the environment and overrides.

    ``overrides`` is nested like the file (``{"window": {"grace": "10s"}}``).
    Raises ConfigError describing every invalid field.
    """
    file_layer = _read_config_file(config_file) if config_file else {}
    origin = f"{config_file}, METERWAX_* environment or flags" if config_file else "settings"
    token = _FILE_LAYER.set(file_layer)
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_format_errors(origin, exc)) from None
    finally:
        _FILE_LAYER.reset(token)
    remember(settings.secrets())
    return settings
