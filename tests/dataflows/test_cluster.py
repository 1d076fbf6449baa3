"""Several processes (a Bytewax cluster) give the same totals as one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from sinks.local_services import free_port
from tests.dataflows.conftest import METERS_YAML, PRICING_YAML
from tests.dataflows.scenario import SCENARIO_CLOCK, build_scenario, expected_totals
from tests.dataflows.test_kafka_flow import produce

pytestmark = pytest.mark.integration

METERWAX = [sys.executable, "-m", "cli.main"]


def test_two_processes_match_the_expectation(
    tmp_path: Path,
    kafka_brokers: str,
    new_topic: Callable[..., str],
    redis_url: str,
) -> None:
    # Without events past the settlement horizon: whether those are too late depends
    # on which process starts reading first (a partition not yet read holds the
    # watermark), and this test is about equal totals, not lateness.
    scenario = build_scenario(too_late=False)
    topic = new_topic(partitions=4)
    produce(kafka_brokers, topic, scenario.lines, partitions=4)
    (tmp_path / "meters.yaml").write_text(METERS_YAML)
    (tmp_path / "pricing.yaml").write_text(PRICING_YAML)
    config = tmp_path / "meterwax.yaml"
    config.write_text(
        json.dumps(
            {
                "input": {"kind": "kafka", "batch_size": 50},
                "catalogs": {
                    "meters": str(tmp_path / "meters.yaml"),
                    "pricing": str(tmp_path / "pricing.yaml"),
                },
                "kafka": {
                    "brokers": kafka_brokers,
                    "topics": [topic],
                    "tail": False,
                    "dead_letter_topic": new_topic(prefix="dead-letters"),
                },
                "redis": {"url": redis_url, "key_prefix": f"cluster-{topic}"},
                # Its own chDB path: this test process already holds the suite's one.
                "clickhouse": {"dsn": f"chdb://{tmp_path / 'chdb'}", "database": "cluster"},
                "flow": {"shards": 6},
            }
        )
    )
    addresses = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    processes = [
        subprocess.Popen(
            [
                *(*METERWAX, "--test-clock-offset-ms", str(SCENARIO_CLOCK.offset_ms)),
                *("run", "--config", str(config), "--json", "--no-progress"),
                *("--process-id", str(pid), "--addresses", addresses),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in (0, 1)
    ]
    outputs = [p.communicate(timeout=240) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    summaries = [json.loads(out) for out, _ in outputs]

    assert sum(s["run"]["consumed"] for s in summaries) == len(scenario.lines)
    assert sum(s["run"]["accepted"] for s in summaries) == len(scenario.accepted)
    assert sum(s["run"]["duplicates"] for s in summaries) == scenario.duplicates
    usage = {
        (row["tenant"], row["meter"]): (Decimal(row["quantity"]), Decimal(row["amount"]))
        for row in summaries[0]["usage"]
    }
    assert usage == expected_totals(scenario)
    assert summaries[1]["usage"] == []  # only process 0 owns ClickHouse
