"""``meterwax estimate`` and ``meterwax invoice`` as a user runs them, on real chDB and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from clickhouse_connect.driver.client import Client

from cli.main import main
from config.clock import FixedClock
from operators.model import Event, Measure, RatedWindow, RawMessage, WindowKind
from sinks.clickhouse import ClickHouseWriter
from sinks.local_services import free_port
from sinks.redis_keys import live_index_key, live_usage_key
from sinks.redis_live_usage import read_live_usage
from tests.dataflows.conftest import METERS_YAML

pytestmark = pytest.mark.integration

D = Decimal
OCT_2026_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z
NOV_2026_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DEC_2026_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
V2_MS = 1_794_787_200_000  # 2026-11-16T00:00:00Z: price version v2, half of November
# "Now" for every command here: half of the November these tests report on.
CLOCK = FixedClock(V2_MS)
HOUR = 3_600_000

PRICING_YAML = """
plans:
  - id: metered
    currency: USD
    versions:
      - version: v1
        effective_from: "2026-01-01T00:00:00Z"
        fixed_fee: "10"
        minimum_commitment: "25"
        prices:
          tokens: { model: per_unit, unit_price: "0.001", minimum: "2" }
          calls: { model: per_unit, unit_price: "0.0005" }
          peak_gb: { model: per_unit, unit_price: "0.5" }
      - version: v2
        effective_from: "2026-11-16T00:00:00Z"
        prices:
          tokens: { model: per_unit, unit_price: "0.0008" }
          calls: { model: per_unit, unit_price: "0.0005" }
          peak_gb: { model: per_unit, unit_price: "0.5" }
  - id: yen
    currency: JPY
    versions:
      - version: y1
        effective_from: "2026-01-01T00:00:00Z"
        fixed_fee: "1000.5"
        prices:
          tokens: { model: per_unit, unit_price: "0.0025" }
  - id: fees
    currency: USD
    versions:
      - version: f1
        effective_from: "2026-01-01T00:00:00Z"
        prices:
          # Lago's percentage example: 1.2% + 0.10 a payment; the first 3 or $500 free.
          tokens:
            model: percentage
            rate_percent: "1.2"
            fixed_fee_per_event: "0.10"
            free_events: 3
            free_amount: "500"
          # A first-tier fee due at zero usage.
          peak_gb:
            model: graduated
            tiers: [{ up_to: "10", unit_price: "0", flat_price: "3" }, { unit_price: "0.5" }]
subscriptions:
  - { tenant: payco, plan: fees }
  - { tenant: acme, plan: metered }
  - { tenant: globex, plan: metered }
  - { tenant: kaisha, plan: yen }
"""


def window(
    tenant: str,
    meter: str,
    start_ms: int,
    quantity: str,
    amount: str,
    *,
    version: str = "v1",
    revision: int = 1,
    currency: str = "USD",
    plan: str = "metered",
) -> RatedWindow:
    """A rated window revision as the flow writes it."""
    return RatedWindow(
        tenant=tenant,
        meter=meter,
        groups=(),
        window_start_ms=start_ms,
        window_end_ms=start_ms + 60_000,
        quantity=D(quantity),
        previous_quantity=D(0),
        amount=D(amount),
        previous_amount=D(0),
        currency=currency,
        plan_id=plan,
        price_version=version,
        revision=revision,
        kind=WindowKind.WINDOW if revision == 1 else WindowKind.ADJUSTMENT,
        emitted_at_ms=start_ms + 120_000 + revision,
        period_start_ms=start_ms,
        period_quantity=D(quantity),
        period_amount=D(amount),
    )


@pytest.fixture
def stored(ch_client: Client, ch_database: str) -> Client:
    """Rated windows of November 2026 (and around it) for acme, globex and kaisha."""
    ClickHouseWriter(ch_client, ch_database).write_windows(
        [
            window("acme", "tokens", NOV_2026_MS + HOUR, "1000", "1.0"),
            # A late adjustment of the same window: only the latest revision counts.
            window("acme", "tokens", NOV_2026_MS + HOUR, "1500", "1.5", revision=2),
            window("acme", "tokens", V2_MS + HOUR, "500", "0.4", version="v2"),
            *(window("acme", "calls", NOV_2026_MS + n * HOUR, "100", "0.05") for n in range(3)),
            # Outside the period, and another tenant: never on acme's November invoice.
            window("acme", "tokens", OCT_2026_MS + HOUR, "9990", "9.99"),
            window("globex", "tokens", NOV_2026_MS + HOUR, "7000", "7.0"),
            window(
                "kaisha",
                "tokens",
                NOV_2026_MS + HOUR,
                "1000",
                "2.5",
                version="y1",
                currency="JPY",
                plan="yen",
            ),
        ]
    )
    return ch_client


@pytest.fixture
def catalogs(tmp_path: Path) -> list[str]:
    """``--meters`` and ``--pricing`` flags for the test catalogs."""
    (tmp_path / "meters.yaml").write_text(METERS_YAML)
    (tmp_path / "pricing.yaml").write_text(PRICING_YAML)
    return ["--meters", str(tmp_path / "meters.yaml"), "--pricing", str(tmp_path / "pricing.yaml")]


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def live_client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def config(tmp_path: Path, prefix: str) -> list[str]:
    """``--config`` with this test's Redis key prefix."""
    path = tmp_path / "settings.yaml"
    path.write_text(f"redis:\n  key_prefix: {prefix}\n")
    return ["--config", str(path)]


def put_counter(
    client: redis.Redis,
    prefix: str,
    tenant: str,
    meter: str,
    quantity: str,
    amount: str,
    *,
    start_ms: int = NOV_2026_MS,
    end_ms: int = DEC_2026_MS,
    currency: str = "USD",
) -> None:
    """Write a live counter as the contract lays it out (literal keys, not the helpers)."""
    client.hset(
        f"{prefix}:usage:{len(tenant)}:{tenant}:{meter}:{start_ms}",
        mapping={
            "quantity": quantity,
            "amount": amount,
            "currency": currency,
            "period_start_ms": start_ms,
            "period_end_ms": end_ms,
            "updated_ms": start_ms + HOUR,
        },
    )
    client.sadd(f"{prefix}:usage-index:{len(tenant)}:{tenant}", f"{meter}:{start_ms}")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), clock=CLOCK)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def test_key_layout_is_the_documented_one() -> None:
    assert live_usage_key("mw", "a:b", "tokens", 42) == "mw:usage:3:a:b:tokens:42"
    assert live_index_key("mw", "a:b") == "mw:usage-index:3:a:b"


def test_estimate_adds_live_counters_to_closed_windows_and_projects(
    capsys: pytest.CaptureFixture[str],
    stored: Client,
    chdb_dsn: str,
    ch_database: str,
    catalogs: list[str],
    config: list[str],
    live_client: redis.Redis,
    prefix: str,
    redis_url: str,
) -> None:
    put_counter(live_client, prefix, "acme", "tokens", "2100", "2.1")
    # Behind the closed windows (0.15): provisional must not go negative.
    put_counter(live_client, prefix, "acme", "calls", "290", "0.145")
    put_counter(live_client, prefix, "acme", "peak_gb", "4", "2")
    # Another period and another tenant: not part of this estimate.
    put_counter(live_client, prefix, "acme", "tokens", "1", "5", start_ms=OCT_2026_MS)
    put_counter(live_client, prefix, "globex", "tokens", "1", "5")

    result = run_json(
        capsys,
        *("estimate", "--tenant", "acme", "--period", "2026-11"),
        *("--dsn", chdb_dsn, "--database", ch_database, "--redis-url", redis_url),
        *catalogs,
        *config,
    )

    assert result["period"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    assert (result["plan"], result["currency"], result["elapsed_fraction"]) == (
        "metered",
        "USD",
        "0.500000",
    )
    assert {m["meter"]: m for m in result["meters"]} == {
        "calls": {
            "meter": "calls",
            "usage": "300",
            "final": "0.15",
            "provisional": "0",
            "total": "0.15",
            "projection": "0.3",
            "currency": "USD",
            "live": "lagging",
            "priced_from": "windows",
        },
        "peak_gb": {
            "meter": "peak_gb",
            "usage": "4",
            "final": "0",
            "provisional": "2",
            "total": "2",
            "projection": "4",
            "currency": "USD",
            "live": "current",
            "priced_from": "windows",
        },
        "tokens": {
            "meter": "tokens",
            "usage": "2100",
            "final": "1.9",
            "provisional": "0.2",
            "total": "2.1",
            "projection": "4.2",
            "currency": "USD",
            "live": "current",
            "priced_from": "windows",
        },
    }
    assert (result["total"], result["projection"]) == ("4.25", "8.5")


def test_estimate_text_and_without_redis(
    capsys: pytest.CaptureFixture[str],
    stored: Client,
    chdb_dsn: str,
    ch_database: str,
    catalogs: list[str],
) -> None:
    code, out, _ = run(
        capsys,
        *("estimate", "--tenant", "acme", "--period", "2026-11-20T12:00:00Z"),
        *("--dsn", chdb_dsn, "--database", ch_database),
        *catalogs,
    )

    assert code == 0
    assert "estimate for acme, plan metered (USD), period 2026-11-01T00:00:00Z" in out
    tokens = next(line.split() for line in out.splitlines() if line.strip().startswith("tokens"))
    # usage, final, provisional, total (closed windows only), then projection and currency.
    assert tokens[1:5] == ["2000", "1.9", "0", "1.9"]
    assert tokens[-1] == "USD"
    assert "before the invoice's minimums, fixed fee and minimum commitment" in out


def test_invoice_lines_true_ups_and_rounded_total(
    capsys: pytest.CaptureFixture[str],
    stored: Client,
    chdb_dsn: str,
    ch_database: str,
    catalogs: list[str],
) -> None:
    tables = "SELECT name, total_rows FROM system.tables WHERE database = {db:String}"
    before = stored.query(tables, parameters={"db": ch_database}).result_rows

    result = run_json(
        capsys,
        *("invoice", "--tenant", "acme", "--period", "2026-11"),
        *("--dsn", chdb_dsn, "--database", ch_database),
        *catalogs,
    )

    assert [
        (line["kind"], line["meter"], line["price_version"], line["quantity"], line["amount"])
        for line in result["lines"]
    ] == [
        ("usage", "calls", "v1", "300", "0.15"),
        ("usage", "tokens", "v1", "1500", "1.5"),
        ("usage", "tokens", "v2", "500", "0.4"),
        ("minimum", "tokens", "v1", None, "0.1"),
        ("fixed_fee", None, "v1", None, "10"),
        ("minimum_commitment", None, "v1", None, "12.85"),
    ]
    assert [line["amount_rounded"] for line in result["lines"]] == [
        "0.15",
        "1.50",
        "0.40",
        "0.10",
        "10.00",
        "12.85",
    ]
    assert (result["total"], result["currency"], result["minor_units"]) == ("25.00", "USD", 2)
    assert (result["price_version"], result["dry_run"]) == ("v1", True)
    # A dry run: no table and no row was added.
    assert stored.query(tables, parameters={"db": ch_database}).result_rows == before


def test_invoice_in_yen_and_as_text(
    capsys: pytest.CaptureFixture[str],
    stored: Client,
    chdb_dsn: str,
    ch_database: str,
    catalogs: list[str],
) -> None:
    flags = [*("--dsn", chdb_dsn, "--database", ch_database), *catalogs]
    result = run_json(capsys, "invoice", "--tenant", "kaisha", "--period", "2026-11", *flags)

    # 2.5 and 1000.5 round half-even to whole yen: 2 and 1000.
    assert [line["amount_rounded"] for line in result["lines"]] == ["2", "1000"]
    assert (result["total"], result["minor_units"]) == ("1002", 0)

    code, out, _ = run(capsys, "invoice", "--tenant", "kaisha", "--period", "2026-11", *flags)
    assert code == 0
    assert "invoice (dry run) for kaisha, plan yen version y1 (JPY)" in out
    assert out.splitlines()[-1].split() == ["total", "1002", "JPY"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["estimate", "--tenant", "nobody"], "--tenant: tenant 'nobody' has no subscription"),
        (["invoice", "--tenant", "nobody", "--period", "2026-11"], "'nobody' has no subscription"),
        (["estimate", "--tenant", "acme", "--period", "2026-13"], "--period: '2026-13'"),
        (["invoice", "--tenant", "acme", "--period", "last month"], "--period: time 'last"),
        (["invoice", "--tenant", "acme", "--period", "2026-11-15"], "such as 2026-11 or"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
    ch_client: Client,
    chdb_dsn: str,
    ch_database: str,
    catalogs: list[str],
    argv: list[str],
    message: str,
) -> None:
    code, out, err = run(capsys, *argv, "--dsn", chdb_dsn, "--database", ch_database, *catalogs)

    assert (code, out) == (2, "")
    assert message in err


def test_invoice_needs_a_period(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["invoice", "--tenant", "acme"])
    assert exited.value.code == 2
    assert "--period" in capsys.readouterr().err


def test_unreachable_redis_exits_1(
    capsys: pytest.CaptureFixture[str],
    ch_client: Client,
    chdb_dsn: str,
    ch_database: str,
    catalogs: list[str],
) -> None:
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"

    code, out, err = run(
        capsys,
        *("estimate", "--tenant", "acme", "--redis-url", dead),
        *("--dsn", chdb_dsn, "--database", ch_database),
        *catalogs,
    )

    assert (code, out) == (1, "")
    assert "cannot read live usage from Redis" in err
    assert "hunter2" not in err


def test_a_counter_that_breaks_the_contract_is_reported(
    capsys: pytest.CaptureFixture[str],
    ch_client: Client,
    chdb_dsn: str,
    ch_database: str,
    catalogs: list[str],
    config: list[str],
    live_client: redis.Redis,
    prefix: str,
    redis_url: str,
) -> None:
    put_counter(live_client, prefix, "acme", "tokens", "12", "1e")

    code, _, err = run(
        capsys,
        *("estimate", "--tenant", "acme", "--period", "2026-11", "--redis-url", redis_url),
        *("--dsn", chdb_dsn, "--database", ch_database),
        *catalogs,
        *config,
    )

    assert code == 1
    assert f"{prefix}:usage:4:acme:tokens:{NOV_2026_MS}: amount '1e' is not a decimal" in err


def test_read_live_usage_skips_expired_counters(
    live_client: redis.Redis, prefix: str, redis_url: str
) -> None:
    put_counter(live_client, prefix, "a:b", "tokens", "12.5", "0.000000000000000000001")
    # Listed in the index, but the hash has expired.
    live_client.sadd(live_index_key(prefix, "a:b"), f"calls:{NOV_2026_MS}")

    found = read_live_usage(live_client, prefix, "a:b", NOV_2026_MS)

    assert list(found) == ["tokens"]
    assert (found["tokens"].quantity, found["tokens"].amount) == (D("12.5"), D("1E-21"))
    assert (found["tokens"].period_end_ms, found["tokens"].currency) == (DEC_2026_MS, "USD")
    assert read_live_usage(live_client, prefix, "a", NOV_2026_MS) == {}


def test_invoice_prices_per_event_charges_from_the_event_log_and_shows_zero_usage_fees(
    capsys: pytest.CaptureFixture[str],
    ch_client: Client,
    chdb_dsn: str,
    ch_database: str,
    catalogs: list[str],
) -> None:
    writer = ClickHouseWriter(ch_client, ch_database)

    def payment(n: int, amount: str) -> Event:
        raw = RawMessage(b"{}", "test", 0, n)
        measure = Measure("tokens", D(amount), ())
        return Event("payco", "shop", f"p{n}", "payment", NOV_2026_MS + n * 1000, (measure,), raw)

    payments = [payment(1, "200"), payment(2, "100"), payment(3, "100"), payment(4, "50")]
    # Arrival order and a replayed batch must not matter: the event time orders them.
    writer.write_events(
        [(payments[::-1], NOV_2026_MS), (payments[:2], NOV_2026_MS)], {"tokens": "SUM"}
    )
    # The window streamed the provisional 1.2% of the sum.
    writer.write_windows(
        [window("payco", "tokens", NOV_2026_MS, "450", "5.4", version="f1", plan="fees")]
    )

    result = run_json(
        capsys,
        *("invoice", "--tenant", "payco", "--period", "2026-11"),
        *("--dsn", chdb_dsn, "--database", ch_database),
        *catalogs,
    )

    assert [
        (line["kind"], line["meter"], line["quantity"], line["amount_rounded"])
        for line in result["lines"]
    ] == [("usage", "tokens", "450", "0.70"), ("usage", "peak_gb", "0", "3.00")]
    assert result["total"] == "3.70"
    assert [line["priced_from"] for line in result["lines"]] == ["events", "catalog"]
    assert result["note"].startswith("open period: lines priced from windows count")

    # The estimate prices the same events with the same function (November is still open).
    estimate = run_json(
        capsys,
        *("estimate", "--tenant", "payco", "--period", "2026-11"),
        *("--dsn", chdb_dsn, "--database", ch_database),
        *catalogs,
    )

    tokens = next(m for m in estimate["meters"] if m["meter"] == "tokens")
    assert (tokens["usage"], tokens["final"], tokens["provisional"], tokens["total"]) == (
        "450",
        "0",
        "0.7",
        "0.7",
    )
    assert tokens["priced_from"] == "events"
    assert estimate["total"] == "3.7"
    assert "provisional until the period ends" in estimate["note"]
