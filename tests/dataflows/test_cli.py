"""The ``meterwax`` command as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from cli.run_command import KAFKA_CONSUMER_DEFAULTS
from config.clock import FixedClock
from dataflows.kafka_source import KafkaBatchSource

EVENT = (
    '{{"specversion":"1.0","id":"{id}","source":"cli-test","type":"llm.completion",'
    '"subject":"acme","time":"2026-11-01T10:{minute:02d}:00Z","data":{{"tokens":{tokens},'
    '"model":"gpt-large"}}}}'
)
# "Now" for the run: the day after the events (so none is in the future).
AFTER_EVENTS_MS = 1_793_577_600_000  # 2026-11-02T00:00:00Z


def test_run_prints_summary_and_stores_windows(
    tmp_path: Path, chdb_dsn: str, ch_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    lines = [EVENT.format(id=f"e{n}", minute=n % 5, tokens=100 + n) for n in range(20)]
    lines += [lines[3], "not json", ""]
    events.write_text("\n".join(lines) + "\n")

    code = main(
        [
            *("run", "--input-path", str(events), "--dsn", chdb_dsn),
            *("--database", ch_database, "--no-progress", "--json"),
        ],
        clock=FixedClock(AFTER_EVENTS_MS),
    )

    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["run"]["consumed"] == 22
    assert out["run"]["accepted"] == 20
    assert out["run"]["duplicates"] == 1
    assert out["run"]["rejected"] == {"malformed_json": 1}
    assert out["run"]["reconciles"] is True
    tokens = [row for row in out["usage"] if row["meter"] == "tokens"]
    # acme is on the pro plan: 2026-11 version prices tokens at 0.0000012 USD.
    assert tokens == [
        {
            "tenant": "acme",
            "meter": "tokens",
            "quantity": str(sum(100 + n for n in range(20))),
            "amount": "0.002628",
            "currency": "USD",
        }
    ]


def test_bad_flag_value_exits_2_naming_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--grace", "soon"])
    err = capsys.readouterr().err
    assert code == 2
    assert "window.grace" in err
    assert "'soon' is not a duration" in err


def test_bad_catalog_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meters = tmp_path / "meters.yaml"
    meters.write_text("meters:\n  - slug: Bad Slug\n")
    code = main(["run", "--meters", str(meters)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(meters) in err
    assert "meters[0]" in err


def test_print_config_masks_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--dsn", "http://u:hunter2@localhost:8123", "--print-config"])
    out = capsys.readouterr().out
    assert code == 0
    assert "hunter2" not in out
    assert json.loads(out)["clickhouse"]["dsn"] == "http://u:***@localhost:8123"


@pytest.mark.parametrize(
    "command",
    ["run", "services", "produce", "reconcile", "quote", "estimate", "invoice", "api", "bench"],
)
def test_every_command_prints_its_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    assert f"usage: meterwax {command}" in capsys.readouterr().out


def test_kafka_config_overrides_the_consumer_defaults() -> None:
    def consumer(user: dict[str, str]) -> dict[str, object]:
        source = KafkaBatchSource(
            ["127.0.0.1:9"], ["usage"], add_config=user, consumer_config=KAFKA_CONSUMER_DEFAULTS
        )
        return source.consumer_settings()

    backoff = "fetch.queue.backoff.ms"
    assert consumer({})[backoff] == KAFKA_CONSUMER_DEFAULTS[backoff]
    assert consumer({backoff: "50"})[backoff] == "50"
