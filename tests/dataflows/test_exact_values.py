"""Numbers used as UNIQUE_COUNT and group-by values stay exact through the flow into ClickHouse."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
from clickhouse_connect.driver.client import Client

from cli.main import main
from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from tests.dataflows.conftest import METERS_YAML, PRICING_YAML
from tests.dataflows.scenario import BASE_MS, MINUTE, _iso
from tests.dataflows.test_flow_end_to_end import _run

pytestmark = pytest.mark.integration

BIG_USERS = ("18446744073709551617", "18446744073709551618")  # one double apart from the other
SMALL_USERS = ("0.30000000000000001", "0.3")  # the same double
# The second is how a double spells the first.
MODELS = ("123456789012345678901234", "1.2345678901234569e+23")


def _line(n: int, time_ms: int, event_type: str, data: str) -> bytes:
    """An event of tenant globex whose ``data`` is the raw JSON text ``data``."""
    return (
        f'{{"specversion":"1.0","id":"evt-{n}","source":"tests/exact","subject":"globex",'
        f'"time":"{_iso(time_ms)}","type":"{event_type}","data":{data}}}'
    ).encode()


def _events() -> list[bytes]:
    first, second = BASE_MS, BASE_MS + MINUTE
    users = [(first, u) for u in (*BIG_USERS, BIG_USERS[0])]
    users += [(second, u) for u in (*SMALL_USERS, SMALL_USERS[1])]
    lines = [_line(n, t, "api.request", f'{{"user":{u}}}') for n, (t, u) in enumerate(users)]
    for n, model in enumerate(MODELS, start=len(lines)):
        lines.append(_line(n, first, "llm.completion", f'{{"tokens":1.5,"model":{model}}}'))
    return lines


@pytest.mark.parametrize("engine", ["python", "native"])
def test_number_values_are_counted_and_stored_exactly(
    tmp_path: Path,
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    ch_client: Client,
    ch_database: str,
    engine: Literal["python", "native"],
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(_events()) + b"\n")

    stats = _run(events, catalogs, chdb_dsn, ch_database, batch_size=3, engine=engine)

    assert stats.accepted == 8
    _assert_windows_exact(ch_client, ch_database)


def _assert_windows_exact(ch_client: Client, ch_database: str) -> None:
    db = f"`{ch_database}`"
    users = ch_client.query(
        f"SELECT quantity FROM {db}.window_usage WHERE meter = 'users' ORDER BY window_start"
    ).result_rows
    assert [Decimal(q) for (q,) in users] == [2, 2]
    tokens = ch_client.query(
        f"SELECT group_values['model'], quantity FROM {db}.window_usage WHERE meter = 'tokens'"
    ).result_rows
    assert sorted(tokens) == sorted((model, Decimal("1.5")) for model in MODELS)


def test_number_values_are_logged_and_reconciled_exactly(
    tmp_path: Path,
    catalogs: tuple[MeterCatalog, PricingCatalog],
    chdb_dsn: str,
    ch_client: Client,
    ch_database: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(_events()) + b"\n")

    stats = _run(events, catalogs, chdb_dsn, ch_database, batch_size=3)

    assert stats.accepted == 8
    _assert_windows_exact(ch_client, ch_database)
    db = f"`{ch_database}`"
    logged = ch_client.query(
        f"SELECT DISTINCT distinct_value FROM {db}.accepted_events WHERE meter = 'users'"
    ).result_rows
    assert {v for (v,) in logged} == {*BIG_USERS, *SMALL_USERS}

    (tmp_path / "meters.yaml").write_text(METERS_YAML)
    (tmp_path / "pricing.yaml").write_text(PRICING_YAML)
    code = main(
        [
            "reconcile",
            *("--from", "2026-10-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"),
            *("--dsn", chdb_dsn, "--database", ch_database),
            *("--meters", str(tmp_path / "meters.yaml")),
            *("--pricing", str(tmp_path / "pricing.yaml")),
        ]
    )
    assert code == 0, capsys.readouterr().out
    assert "no differences" in capsys.readouterr().out
