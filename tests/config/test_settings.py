"""Settings: layering, validation messages and secret masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.settings import load_settings, redact_url


def test_defaults_point_at_the_bundled_examples() -> None:
    settings = load_settings()
    assert settings.input.path.is_file()
    assert settings.catalogs.meters.is_file()
    assert settings.catalogs.pricing.is_file()
    assert settings.window.size == 60_000
    assert settings.window.effective_dedup_horizon == settings.window.settlement_horizon


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "meterwax.yaml"
    config.write_text("window:\n  size: 5m\n  grace: 10s\n  idle_timeout: 3s\nflow:\n  shards: 3\n")
    monkeypatch.setenv("METERWAX_WINDOW__GRACE", "45s")
    monkeypatch.setenv("METERWAX_FLOW__SHARDS", "5")

    settings = load_settings(config, {"flow": {"shards": 7}})

    assert settings.window.size == 300_000  # file
    assert settings.window.idle_timeout == 3_000  # file
    assert settings.window.grace == 45_000  # environment beats file
    assert settings.flow.shards == 7  # flag beats environment


def test_unknown_setting_is_named_with_a_hint(tmp_path: Path) -> None:
    config = tmp_path / "meterwax.yaml"
    config.write_text("window:\n  graze: 10s\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert str(config) in str(error.value)
    assert "window.graze" in str(error.value)
    assert "spelling" in str(error.value)


def test_bad_duration_says_how_to_write_one() -> None:
    with pytest.raises(ConfigError, match=r"window\.grace.*'ten seconds' is not a duration.*90s"):
        load_settings(overrides={"window": {"grace": "ten seconds"}})


def test_settlement_shorter_than_grace_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"settlement_horizon .* must be at least grace"):
        load_settings(overrides={"window": {"grace": "2h", "settlement_horizon": "1h"}})


def test_chdb_group_by_spill_is_bytes_from_zero() -> None:
    spill = load_settings(overrides={"clickhouse": {"chdb_group_by_spill_bytes": 0}})
    assert spill.clickhouse.chdb_group_by_spill_bytes == 0
    with pytest.raises(ConfigError, match=r"clickhouse\.chdb_group_by_spill_bytes"):
        load_settings(overrides={"clickhouse": {"chdb_group_by_spill_bytes": -1}})


def test_config_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    config = tmp_path / "meterwax.yaml"
    config.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(config)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load_settings(tmp_path / "nope.yaml")


def test_password_never_printed() -> None:
    settings = load_settings(
        overrides={"clickhouse": {"dsn": "https://meter:s3cr3t@ch.example:8443"}}
    )
    assert "s3cr3t" not in str(settings)
    assert "s3cr3t" not in repr(settings.masked())
    assert settings.masked()["clickhouse"]["dsn"] == "https://meter:***@ch.example:8443"
    assert redact_url("chdb://./data") == "chdb://./data"
