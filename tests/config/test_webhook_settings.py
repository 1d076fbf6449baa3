"""Webhook settings: checked at start-up, one line per problem, secrets never shown."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import main
from config.errors import ConfigError
from config.settings import load_settings

SECRET = "whsec_" + base64.b64encode(b"s3cret-bytes-for-the-webhook-tst").decode()
RAW = SECRET.removeprefix("whsec_")


def _settings(endpoint: dict[str, Any], **extra: Any) -> dict[str, Any]:
    base = {"name": "platform", "url": "https://hooks.example.com/m", "secret": SECRET}
    return {
        "redis": {"url": "redis://127.0.0.1:1/0"},
        "webhooks": {"endpoints": [{**base, **endpoint}], **extra},
    }


@pytest.mark.parametrize(
    ("endpoint", "extra", "expected"),
    [
        ({"url": "ftp://hooks.example.com"}, {}, "is not an http(s) URL"),
        ({"url": f"https://u:{RAW}@hooks.example.com/m"}, {}, "must not hold user:password@"),
        ({"url": "https://hooks.example.com:99999/m"}, {}, "port from 1 to 65535"),
        ({"url": "https://hooks.example.com:abc/m"}, {}, "port from 1 to 65535"),
        ({"events": ["quota.threshold", "invoice.paid"]}, {}, "unknown event type(s) invoice.paid"),
        ({"secret": "not-whsec"}, {}, "must start with 'whsec_'"),
        ({"secret": "whsec_@@@"}, {}, "must be valid base64"),
        ({"secret": "whsec_" + base64.b64encode(b"short").decode()}, {}, "24 to 64 bytes"),
        ({"secret_file": "/x"}, {}, "set exactly one of secret and secret_file"),
        ({"name": "has space"}, {}, "webhooks.endpoints.0.name"),
        ({}, {"retry_for": "2h"}, "retry_for must be at least 24h"),
        ({}, {"spend_thresholds": {"plans": {"pro": ["-5"]}}}, "amounts must be positive"),
    ],
)
def test_bad_webhook_settings_are_named(
    endpoint: dict[str, Any], extra: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(overrides=_settings(endpoint, **extra))
    assert expected in str(error.value)
    assert RAW not in str(error.value)


def test_endpoints_need_redis() -> None:
    overrides = _settings({})
    del overrides["redis"]
    with pytest.raises(ConfigError, match=r"webhooks\.endpoints need redis\.url"):
        load_settings(overrides=overrides)


def test_period_closed_waits_for_the_settlement_horizon() -> None:
    overrides = {**_settings({}, period_closed_after="1h"), "window": {"settlement_horizon": "3d"}}
    with pytest.raises(ConfigError) as error:
        load_settings(overrides=overrides)
    assert str(error.value) == (
        "webhooks.period_closed_after (1h) must be at least window.settlement_horizon (3d): "
        "late events change a period's usage until then; raise period_closed_after"
    )
    # Without period.closed, the setting does not matter.
    quiet = _settings({"events": ["quota.hard_limit"]}, period_closed_after="1h")
    load_settings(overrides={**quiet, "window": {"settlement_horizon": "3d"}})


def test_run_refuses_in_one_line_without_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "meterwax.yaml"
    config.write_text(yaml.safe_dump(_settings({"url": f"mailto:x?k={SECRET}"})))
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "webhooks.endpoints.0" in err and "Traceback" not in err
    assert RAW not in err


def test_unreadable_secret_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "meterwax.yaml"
    settings = _settings({"secret": None, "secret_file": str(tmp_path / "missing")})
    config.write_text(yaml.safe_dump(settings))
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "webhooks.endpoints.platform.secret_file" in err and "cannot read" in err


def test_printed_settings_mask_the_secret(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "meterwax.yaml"
    config.write_text(yaml.safe_dump(_settings({})))
    assert main(["run", "--config", str(config), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert RAW not in out
    assert json.loads(out)["webhooks"]["endpoints"][0]["name"] == "platform"


def test_the_readme_example_is_valid() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("## Webhooks", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    example = yaml.safe_load(block)
    settings = load_settings(overrides={"redis": {"url": "redis://127.0.0.1:1/0"}, **example})
    w = settings.webhooks
    assert [e.name for e in w.endpoints] == ["platform"] and w.retry_for == 26 * 3_600_000
    assert [str(a) for a in w.spend_thresholds.for_tenant("acme", "pro")] == ["50"]
