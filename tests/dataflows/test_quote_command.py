"""``meterwax quote`` as a user runs it: period amounts from the catalog, and clear errors."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from cli import quote_command
from config.clock import SYSTEM_CLOCK, Clock, FixedClock
from config.meter_catalog import EXAMPLE_METER_CATALOG

JPY_CATALOG = """\
plans:
  - id: marketplace
    currency: JPY
    versions:
      - version: "v1"
        effective_from: "2026-01-01T00:00:00Z"
        prices:
          sales_yen: { model: percentage, rate_percent: "2.5" }
"""


def quote(command: str, clock: Clock = SYSTEM_CLOCK) -> int:
    """Run ``meterwax quote COMMAND``, parsed as the shell and the CLI would, at ``clock``."""
    parser = argparse.ArgumentParser(prog="meterwax")
    parser.set_defaults(clock=clock)
    quote_command.add_parser(parser.add_subparsers(dest="command", required=True))
    return quote_command.main(parser.parse_args(["quote", *shlex.split(command)]))


def quote_json(
    capsys: pytest.CaptureFixture[str], command: str, clock: Clock = SYSTEM_CLOCK
) -> dict[str, Any]:
    code = quote(f"{command} --json", clock)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result: dict[str, Any] = json.loads(captured.out)
    return result


def failure(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The error text of a quote that must exit 2 without printing a quote or a traceback."""
    code = quote(command)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "Traceback" not in captured.err
    return captured.err


def test_per_unit_with_free_allowance(capsys: pytest.CaptureFixture[str]) -> None:
    result = quote_json(capsys, "--plan starter --meter api_calls --quantity 11000 --at 2026-11-15")

    assert result["version"] == "2026-11"
    assert result["at"] == "2026-11-15T00:00:00Z"
    assert result["price"] == {
        "model": "per_unit",
        "unit_price": "0.00012",
        "free_allowance": "1000",
        "maximum": None,
        "minimum": None,
    }
    # (11000 - 1000 free) x 0.00012
    assert (result["amount"], result["amount_rounded"], result["currency"]) == (
        "1.20000",
        "1.20",
        "USD",
    )


def test_graduated_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = quote("--plan pro --meter tokens --quantity 150000000 --at 2026-11-15")

    out = capsys.readouterr().out
    assert code == 0
    # 10M x 0.0000012 + 90M x 0.000001 + 50M x 0.0000008 = 12 + 90 + 40
    assert "plan pro (USD, --plan), version 2026-11 (from 2026-11-01T00:00:00Z)" in out
    assert "meter tokens: graduated" in out
    assert "up to 10000000        0.0000012 per unit" in out
    assert "above 100000000       0.0000008 per unit" in out
    assert "amount            142.0000000 USD" in out
    assert "rounded           142.00 USD (2 decimal places, half-even)" in out
    # The invoice of a period with only this usage: the fixed fee is on it, and the
    # total (191) is above the minimum commitment (100).
    assert "  usage               tokens                  142.00 USD" in out
    assert "  fixed fee                                    49.00 USD" in out
    assert "  total                                       191.00 USD" in out


@pytest.mark.parametrize(
    ("quantity", "amount"), [("0", "0.00"), ("10", "4.00"), ("11", "8.00"), ("21", "12.00")]
)
def test_package_counts_started_packages(
    capsys: pytest.CaptureFixture[str], quantity: str, amount: str
) -> None:
    at = "2026-03-01T00:00:00+01:00"

    result = quote_json(capsys, f"--plan pro --meter active_users --quantity {quantity} --at {at}")

    assert result["version"] == "2026-01"
    assert result["price"]["model"] == "package"
    assert result["amount"] == amount


@pytest.mark.parametrize(
    ("quantity", "amount", "rounded"),
    [
        ("100000000", "100.000000", "100.00"),
        ("100000001", "80.0000008", "80.00"),  # a larger total, a cheaper tier for every unit
    ],
)
def test_volume_in_eur(
    capsys: pytest.CaptureFixture[str], quantity: str, amount: str, rounded: str
) -> None:
    result = quote_json(
        capsys, f"--plan enterprise --meter tokens --quantity {quantity} --at 2026-06-01"
    )

    assert result["currency"] == "EUR"
    assert result["price"]["tiers"][-1] == {
        "up_to": None,
        "unit_price": "0.0000006",
        "flat_price": "0",
    }
    assert (result["amount"], result["amount_rounded"]) == (amount, rounded)


def test_cap(capsys: pytest.CaptureFixture[str]) -> None:
    result = quote_json(
        capsys, "--plan starter --meter cpu_seconds --quantity 5000000 --at 2026-11-01"
    )

    assert result["price"]["maximum"] == "50"
    assert (result["amount"], result["amount_rounded"]) == ("50", "50.00")


@pytest.mark.parametrize(
    ("quantity", "amount", "rounded"),
    [("1234", "30.85", "31"), ("100", "2.5", "2"), ("140", "3.5", "4")],
)
def test_percentage_rounds_to_whole_yen_half_even(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    quantity: str,
    amount: str,
    rounded: str,
) -> None:
    catalog = tmp_path / "pricing.yaml"
    catalog.write_text(JPY_CATALOG)

    result = quote_json(
        capsys,
        f"--catalog {catalog} --plan marketplace --meter sales_yen --quantity {quantity} "
        "--at 2026-02-01",
    )

    assert result["price"] == {
        "model": "percentage",
        "rate_percent": "2.5",
        "free_allowance": "0",
        "maximum": None,
        "minimum": None,
    }
    assert (result["amount"], result["amount_rounded"], result["minor_units"]) == (
        amount,
        rounded,
        0,
    )


@pytest.mark.parametrize(
    ("at", "version"),
    [
        ("2026-10-31T23:59:59.999Z", "2026-01"),
        ("2026-11-01T00:59:59+01:00", "2026-01"),
        ("2026-11-01", "2026-11"),
        ("2026-11-01T00:00:00Z", "2026-11"),
    ],
)
def test_version_in_force_at(capsys: pytest.CaptureFixture[str], at: str, version: str) -> None:
    result = quote_json(capsys, f"--plan pro --meter tokens --quantity 1 --at {at}")

    assert result["version"] == version


@pytest.mark.parametrize("now_ms", [1_780_272_000_000, 1_796_083_200_000, 4_102_444_800_000])
def test_without_at_quotes_when_the_newest_version_took_effect_whatever_the_time(
    capsys: pytest.CaptureFixture[str], now_ms: int
) -> None:
    result = quote_json(capsys, "--plan pro --meter tokens --quantity 1", FixedClock(now_ms))

    assert (result["version"], result["at"], result["at_default"]) == (
        "2026-11",
        "2026-11-01T00:00:00Z",
        True,
    )


def test_tenant_takes_the_plan_from_its_subscription_or_the_default_plan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = quote_json(capsys, "--tenant acme --meter tokens --quantity 1 --at 2026-11-20")
    stranger = quote_json(capsys, "--tenant stranger --meter tokens --quantity 1 --at 2026-11-20")
    neither = quote_json(capsys, "--meter tokens --quantity 1 --at 2026-11-20")

    assert (acme["plan"], acme["plan_from"]) == ("pro", "subscription of 'acme'")
    assert (stranger["plan"], stranger["plan_from"]) == ("starter", "default_plan")
    assert (neither["plan"], neither["plan_from"]) == ("starter", "default_plan")


def test_plan_and_tenant_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    err = failure(capsys, "--plan pro --tenant acme --meter tokens --quantity 1")

    assert "give --plan or --tenant, not both" in err


def test_without_plan_tenant_or_default_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "pricing.yaml"
    catalog.write_text(JPY_CATALOG)

    err = failure(capsys, f"--catalog {catalog} --meter sales_yen --quantity 1")
    unknown = failure(capsys, f"--catalog {catalog} --tenant acme --meter sales_yen --quantity 1")

    assert f"meterwax quote: give --plan or --tenant ({catalog} names no default_plan)" in err
    assert "plans: marketplace" in err
    assert f"--tenant: 'acme' has no subscription in {catalog}, which names no default_plan" in (
        unknown
    )


def test_meters_catalog_checks_the_slug(capsys: pytest.CaptureFixture[str]) -> None:
    meters = EXAMPLE_METER_CATALOG
    err = failure(capsys, f"--meters {meters} --plan pro --meter token --quantity 1")

    assert f"--meter: 'token' is not a meter in {meters}; use one of: active_users" in err


def test_minimum_fixed_fee_and_commitment_are_in_the_breakdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "pricing.yaml"
    catalog.write_text(
        JPY_CATALOG.replace(
            'effective_from: "2026-01-01T00:00:00Z"',
            'effective_from: "2026-01-01T00:00:00Z"\n'
            '        fixed_fee: "100"\n        minimum_commitment: "500"',
        ).replace('rate_percent: "2.5" }', 'rate_percent: "2.5", minimum: "300" }')
    )

    result = quote_json(
        capsys,
        f"--catalog {catalog} --plan marketplace --meter sales_yen --quantity 1000 --at 2026-02-01",
    )

    # 2.5% of 1000 = 25, raised to the 300 minimum; + 100 fixed; 400 raised to 500.
    assert [(line["kind"], line["amount_rounded"]) for line in result["invoice"]["lines"]] == [
        ("usage", "25"),
        ("minimum", "275"),
        ("fixed_fee", "100"),
        ("minimum_commitment", "100"),
    ]
    assert result["invoice"]["total"] == "500"


def test_zero_usage_fee_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "pricing.yaml"
    catalog.write_text(
        JPY_CATALOG.replace(
            '{ model: percentage, rate_percent: "2.5" }',
            '{ model: graduated, tiers: [{ up_to: "100", unit_price: "0", flat_price: "500" }, '
            '{ unit_price: "3" }] }',
        )
    )

    code = quote(
        f"--catalog {catalog} --plan marketplace --meter sales_yen --quantity 0 --at 2026-02-01"
    )

    out = capsys.readouterr().out
    assert code == 0
    assert "amount            500 JPY" in out
    assert (
        "  zero usage costs 500 JPY: the first tier's flat price is due even without usage "
        "(as Lago and OpenMeter charge it)" in out
    )


def test_per_event_terms_are_priced_as_one_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "pricing.yaml"
    catalog.write_text(
        JPY_CATALOG.replace(
            '{ model: percentage, rate_percent: "2.5" }',
            '{ model: percentage, rate_percent: "2.5", fixed_fee_per_event: "30", '
            'max_fee_per_event: "100" }',
        )
    )

    result = quote_json(
        capsys,
        f"--catalog {catalog} --plan marketplace --meter sales_yen --quantity 10000 "
        "--at 2026-02-01",
    )

    # One event of 10000: 250 + 30, capped at 100 per event.
    assert (result["amount"], result["per_event"]) == ("100", True)
    assert result["price"]["fixed_fee_per_event"] == "30"


def test_unknown_plan_lists_the_plans(capsys: pytest.CaptureFixture[str]) -> None:
    err = failure(capsys, "--plan gold --meter tokens --quantity 1")

    assert "meterwax quote: --plan: 'gold' is not a plan in " in err
    assert "use one of: enterprise, pro, starter" in err


def test_unknown_meter_lists_the_priced_meters(capsys: pytest.CaptureFixture[str]) -> None:
    err = failure(capsys, "--plan pro --meter gpu_hours --quantity 1 --at 2026-11-01")

    assert (
        "--meter: 'gpu_hours' has no price in plan 'pro' version '2026-11' (meters without a "
        "price are not charged); priced meters: active_users, api_calls, cpu_seconds, "
        "storage_gb, tokens" in err
    )


@pytest.mark.parametrize(
    ("quantity", "problem"),
    [
        ("lots", "'lots' is not a number"),
        ("", "'' is not a number"),
        ("NaN", "'NaN' is not a finite number"),
        ("-Infinity", "'-Infinity' is not a finite number"),
        ("-1", "'-1' is negative"),
        ("1.0000000001", "'1.0000000001' has more than 9 decimal places"),
        ("1e18", "'1e18' is 10^18 or more"),
    ],
)
def test_bad_quantity(capsys: pytest.CaptureFixture[str], quantity: str, problem: str) -> None:
    err = failure(capsys, f"--plan pro --meter tokens --quantity='{quantity}'")

    assert f"meterwax quote: --quantity: {problem}" in err


def test_no_version_in_force_yet(capsys: pytest.CaptureFixture[str]) -> None:
    err = failure(capsys, "--plan pro --meter tokens --quantity 1 --at 2025-12-31")

    assert (
        "--at: plan 'pro' has no version in force at 2025-12-31T00:00:00Z; its first version, "
        "'2026-01', starts at 2026-01-01T00:00:00Z" in err
    )


@pytest.mark.parametrize(
    ("at", "problem"),
    [
        ("2026-02-30", "'2026-02-30' is not a real date"),
        ("2026-01-01T00:00:00", "has no UTC offset"),
        ("next week", "is not RFC 3339"),
    ],
)
def test_bad_at(capsys: pytest.CaptureFixture[str], at: str, problem: str) -> None:
    err = failure(capsys, f"--plan pro --meter tokens --quantity 1 --at '{at}'")

    assert "meterwax quote: --at: " in err
    assert problem in err


def test_missing_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"

    err = failure(capsys, f"--catalog {missing} --plan pro --meter tokens --quantity 1")

    assert "meterwax quote: configuration error:" in err
    assert f"{missing}: (file): file not found" in err


def test_invalid_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "pricing.yaml"
    catalog.write_text(JPY_CATALOG.replace('"2.5"', "2.5"))

    err = failure(capsys, f"--catalog {catalog} --plan marketplace --meter sales_yen --quantity 1")

    assert "prices.sales_yen.rate_percent: 2.5 is a floating-point number" in err


def test_negative_zero_quantity_quotes_zero(capsys: pytest.CaptureFixture[str]) -> None:
    result = quote_json(capsys, "--plan pro --meter api_calls --quantity=-0 --at 2026-11-01")

    assert (result["quantity"], result["amount"], result["amount_rounded"]) == (
        "0",
        "0.00000",
        "0.00",
    )


def test_text_output_shows_package_rounding_and_per_event_terms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "pricing.yaml"
    catalog.write_text(
        JPY_CATALOG.replace(
            '{ model: percentage, rate_percent: "2.5" }',
            '{ model: percentage, rate_percent: "2.5", fixed_fee_per_event: "30", '
            'free_events: 2, free_amount: "500", min_fee_per_event: "40", '
            'max_fee_per_event: "100" }\n'
            '          minutes: { model: package, package_size: "60", package_price: "450", '
            "round: down }",
        )
    )
    base = f"--catalog {catalog} --plan marketplace --at 2026-02-01"

    assert quote(f"{base} --meter minutes --quantity 130") == 0
    out = capsys.readouterr().out
    # 130 minutes are 2 complete hours: the text must not say "started".
    assert "meter minutes: package, 450 per complete package of 60 units (round: down)" in out
    assert quote(f"{base} --meter sales_yen --quantity 10000") == 0
    out = capsys.readouterr().out
    assert "  fixed fee       30 per event" in out
    assert "  free units      the first 2 events, while 500 of the amount covers them" in out
    assert "  per event       at least 40, at most 100" in out
