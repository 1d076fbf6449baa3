"""Run-time settings: defaults < config file < ``METERWAX_*`` environment < CLI flags.

Everything is validated once, at start-up; a bad value stops the run with a
message naming where it came from, the field and the fix. Secrets (passwords
inside DSNs) are masked whenever settings are printed.
"""

from __future__ import annotations

import re
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

DurationMs = Annotated[int, BeforeValidator(parse_duration_ms), Field(ge=0)]

EXAMPLES = Path(str(resources.files("config") / "examples"))

# The config file's contents while load_settings() builds a Settings: the file is
# a settings source of its own so that the environment can override it.
_FILE_LAYER: ContextVar[dict[str, Any] | None] = ContextVar("meterwax_file_layer", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSettings(_Section):
    """Where events come from."""

    kind: Literal["file", "generator", "kafka"] = "file"
    path: Path = EXAMPLES / "events.jsonl"
    batch_size: int = Field(1000, ge=1, le=100_000)


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
    max_attempts: int = Field(8, ge=1)


class FlowSettings(_Section):
    """Engine-side knobs."""

    shards: int = Field(8, ge=1, le=4096)
    max_event_bytes: int = Field(65_536, ge=256, le=16 * 1024 * 1024)
    workers: int = Field(1, ge=1, le=256)


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

    def masked(self) -> dict[str, Any]:
        """Settings as plain data with secrets masked, for logs and ``--print-config``."""
        data = self.model_dump(mode="json")
        data["clickhouse"]["dsn"] = redact_url(self.clickhouse.dsn.get_secret_value())
        return data


class _FileSettingsSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_FILE_LAYER.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_LAYER.get() or {})


def redact_url(url: str) -> str:
    """Replace the password in ``scheme://user:password@host`` with ``***``."""
    return re.sub(r"(?<=://)([^:/@]*):[^@/]*@", r"\1:***@", url)


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
        return Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_format_errors(origin, exc)) from None
    finally:
        _FILE_LAYER.reset(token)
