"""`meterwax reconcile` finds every window where stored events and rated windows disagree."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from cli.main import main
from config.settings import load_settings
from operators.reconcile import Problem
from reports.reconciliation import check
from tests.dataflows.conftest import METERS_YAML, PRICING_YAML
from tests.dataflows.reconcile_helpers import PERIODS_END_MS, PERIODS_START_MS
from tests.dataflows.scenario import build_scenario
from tests.dataflows.test_flow_end_to_end import _run

pytestmark = pytest.mark.integration


@pytest.fixture
def metered(
    tmp_path: Path, catalogs: object, chdb_dsn: str, ch_client: Client, ch_database: str
) -> object:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(build_scenario().lines) + b"\n")
    _run(events, catalogs, chdb_dsn, ch_database, batch_size=10)  # type: ignore[arg-type]
    (tmp_path / "meters.yaml").write_text(METERS_YAML)
    (tmp_path / "pricing.yaml").write_text(PRICING_YAML)
    return load_settings(
        overrides={
            "clickhouse": {"dsn": chdb_dsn, "database": ch_database},
            "catalogs": {
                "meters": str(tmp_path / "meters.yaml"),
                "pricing": str(tmp_path / "pricing.yaml"),
            },
        }
    )


def test_a_clean_run_reconciles(metered: object) -> None:
    compared, differences = check(metered, PERIODS_START_MS, PERIODS_END_MS, None)  # type: ignore[arg-type]
    assert compared > 100
    assert differences == []


def test_a_tampered_window_is_reported(
    metered: object, ch_client: Client, ch_database: str
) -> None:
    # A later revision of one window with one unit too many.
    ch_client.command(
        f"""
        INSERT INTO `{ch_database}`.rated_windows
        SELECT * REPLACE (revision + 1000 AS revision, quantity + 1 AS quantity)
        FROM `{ch_database}`.rated_windows
        WHERE tenant = 'globex' AND meter = 'tokens'
        ORDER BY window_start LIMIT 1
        """
    )
    _, differences = check(metered, PERIODS_START_MS, PERIODS_END_MS, None)  # type: ignore[arg-type]
    assert [(d.problem, d.key.tenant, d.key.meter) for d in differences] == [
        (Problem.QUANTITY, "globex", "tokens")
    ]
    assert differences[0].rated == differences[0].expected + 1  # type: ignore[operator]


def test_a_lost_window_and_a_wrong_price_are_reported(
    metered: object, ch_client: Client, ch_database: str
) -> None:
    ch_client.command(
        f"ALTER TABLE `{ch_database}`.rated_windows DELETE WHERE tenant = 'umbrella' "
        "AND meter = 'calls'",
        settings={"mutations_sync": 2},
    )
    ch_client.command(
        f"""
        INSERT INTO `{ch_database}`.rated_windows
        SELECT * REPLACE (revision + 1000 AS revision, amount * 2 AS amount)
        FROM `{ch_database}`.rated_windows
        WHERE tenant = 'acme' AND meter = 'tokens'
        ORDER BY window_start LIMIT 1
        """
    )
    _, differences = check(metered, PERIODS_START_MS, PERIODS_END_MS, None)  # type: ignore[arg-type]
    problems = {(d.problem, d.key.tenant, d.key.meter) for d in differences}
    assert problems == {
        (Problem.MISSING_WINDOW, "umbrella", "calls"),
        (Problem.AMOUNT, "umbrella", "calls"),  # its periods were charged less
        (Problem.AMOUNT, "acme", "tokens"),
    }
    # The doubled window sits in one billing period of acme's tokens.
    assert sum(d.problem is Problem.AMOUNT and d.key.tenant == "acme" for d in differences) == 1


def test_the_command_reports_differences_as_json(
    metered: object,
    ch_client: Client,
    ch_database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ch_client.command(
        f"""
        INSERT INTO `{ch_database}`.rated_windows
        SELECT * REPLACE (revision + 1000 AS revision, quantity + 1 AS quantity)
        FROM `{ch_database}`.rated_windows
        WHERE tenant = 'globex' AND meter = 'tokens'
        ORDER BY window_start LIMIT 1
        """
    )
    settings = metered
    code = main(
        [
            "reconcile",
            *("--from", "2026-10-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"),
            *("--dsn", settings.clickhouse.dsn.get_secret_value()),  # type: ignore[attr-defined]
            *("--database", ch_database),
            *("--meters", str(settings.catalogs.meters)),  # type: ignore[attr-defined]
            *("--pricing", str(settings.catalogs.pricing)),  # type: ignore[attr-defined]
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    problems = [d["problem"] for d in result["differences"]]
    assert "quantity" in problems
    quantity = next(d for d in result["differences"] if d["problem"] == "quantity")
    assert Decimal(quantity["rated"]) == Decimal(quantity["expected"]) + 1
