"""Loading the pricing catalog: the bundled example, exact prices, and every error."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.meter_catalog import EXAMPLE_METER_CATALOG, load_meter_catalog
from config.meters import MeterCatalog
from config.pricing import UnitPrice
from config.pricing_catalog import EXAMPLE_PRICING_CATALOG, load_pricing_catalog

JAN_2026_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOV_2026_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def pricing(
    price: str = '"0.0001"',
    effective_from: str = '"2026-01-01T00:00:00Z"',
    currency: str = "USD",
    extra_versions: str = "",
    tail: str = "",
) -> str:
    """A one-plan pricing file with the given pieces swapped in."""
    return f"""\
plans:
  - id: starter
    currency: {currency}
    versions:
      - version: "v1"
        effective_from: {effective_from}
        prices:
          api_calls: {{ model: per_unit, unit_price: {price} }}
{extra_versions}{tail}"""


def write(tmp_path: Path, text: str, name: str = "pricing.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path, meters: MeterCatalog | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_pricing_catalog(path, meters)
    return str(caught.value)


@pytest.fixture(scope="module")
def example_meters() -> MeterCatalog:
    return load_meter_catalog(EXAMPLE_METER_CATALOG)


def test_example_catalog_loads(example_meters: MeterCatalog) -> None:
    catalog = load_pricing_catalog(EXAMPLE_PRICING_CATALOG, example_meters)

    assert sorted(catalog.plans) == ["pro", "starter"]
    assert catalog.default_plan == "starter"
    assert catalog.subscriptions == {
        "acme": "pro",
        "globex": "pro",
        "initech": "pro",
        "umbrella": "starter",
    }
    for plan in catalog.plans.values():
        assert plan.currency == "USD"
        assert [v.effective_from_ms for v in plan.versions] == [JAN_2026_MS, NOV_2026_MS]
        assert all(set(v.prices) <= {m.slug for m in example_meters.meters} for v in plan.versions)
    starter = catalog.plans["starter"]
    assert starter.versions[0].prices["api_calls"] == UnitPrice(Decimal("0.0001"))
    assert starter.versions[1].prices["api_calls"] == UnitPrice(Decimal("0.00012"))


def test_example_catalog_resolves_plans_and_versions(example_meters: MeterCatalog) -> None:
    catalog = load_pricing_catalog(EXAMPLE_PRICING_CATALOG, example_meters)

    pro = catalog.plan_for("acme")
    assert pro is not None
    assert pro.id == "pro"
    assert catalog.plan_for("someone-new") is catalog.plans["starter"]
    assert catalog.knows("someone-new")
    assert pro.version_at(JAN_2026_MS - 1) is None
    version = pro.version_at(NOV_2026_MS - 1)
    assert version is not None
    assert version.version == "2026-01"
    version = pro.version_at(NOV_2026_MS)
    assert version is not None
    assert version.version == "2026-11"


def test_loads_without_a_meter_catalog_and_without_default_plan(tmp_path: Path) -> None:
    catalog = load_pricing_catalog(write(tmp_path, pricing()))

    assert catalog.default_plan is None
    assert catalog.subscriptions == {}
    assert not catalog.knows("acme")
    assert catalog.plan_for("acme") is None


def test_versions_are_sorted_by_effective_from(tmp_path: Path) -> None:
    later_first = pricing(
        effective_from='"2026-06-01T00:00:00Z"',
        extra_versions="""\
      - version: "v0"
        effective_from: "2026-01-01T00:00:00Z"
        prices: {}
""",
    )

    plan = load_pricing_catalog(write(tmp_path, later_first)).plans["starter"]

    assert [v.version for v in plan.versions] == ["v0", "v1"]
    assert plan.versions[0].prices == {}


@pytest.mark.parametrize(
    "text",
    [
        '"2026-01-01T00:00:00Z"',
        '"2026-01-01T01:00:00+01:00"',
        '"2025-12-31T19:00:00-05:00"',
        '"2026-01-01t00:00:00z"',
        '"2026-01-01 00:00:00.000Z"',
        "2026-01-01T00:00:00Z",  # unquoted: YAML reads it as a timestamp with an offset
    ],
)
def test_effective_from_is_utc_epoch_ms(tmp_path: Path, text: str) -> None:
    catalog = load_pricing_catalog(write(tmp_path, pricing(effective_from=text)))

    assert catalog.plans["starter"].versions[0].effective_from_ms == JAN_2026_MS


def test_effective_from_keeps_milliseconds(tmp_path: Path) -> None:
    text = pricing(effective_from='"2026-01-01T00:00:00.1239Z"')

    version = load_pricing_catalog(write(tmp_path, text)).plans["starter"].versions[0]

    # Sub-millisecond digits are dropped, not rounded.
    assert version.effective_from_ms == JAN_2026_MS + 123


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('"2026-01-01T00:00:00"', "'2026-01-01T00:00:00'"),
        ('"2026-01-01"', "'2026-01-01'"),
        ('"01/01/2026 00:00 UTC"', "'01/01/2026 00:00 UTC'"),
        ('"2026-01-01T00:00:00+0100"', "'2026-01-01T00:00:00+0100'"),
        ("2026-01-01", "2026-01-01"),  # unquoted: YAML reads a date
        ("2026-01-01 00:00:00", "2026-01-01 00:00:00"),  # unquoted: timestamp without offset
    ],
)
def test_effective_from_needs_rfc3339_with_offset(tmp_path: Path, text: str, shown: str) -> None:
    message = load_error(write(tmp_path, pricing(effective_from=text)))

    assert (
        f"pricing.yaml: plans[0].versions[0].effective_from: {shown} is not an RFC 3339 "
        'time with an offset; write it like "2026-01-01T00:00:00Z"' in message
    )


def test_effective_from_must_be_a_real_date(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, pricing(effective_from='"2026-02-30T00:00:00Z"')))

    assert (
        "plans[0].versions[0].effective_from: '2026-02-30T00:00:00Z' is not a real date" in message
    )


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ('"0.0001"', Decimal("0.0001")),
        ("'0.1'", Decimal("0.1")),
        ("3", Decimal(3)),
        ("0", Decimal(0)),
        ('"0.000000000001"', Decimal("1E-12")),
        ('"0.100000000000000"', Decimal("0.1")),  # trailing zeros are not extra precision
        ("1e-5", Decimal("0.00001")),  # YAML 1.1 reads this as a string
    ],
)
def test_unit_price_is_exact(tmp_path: Path, text: str, amount: Decimal) -> None:
    catalog = load_pricing_catalog(write(tmp_path, pricing(price=text)))

    price = catalog.plans["starter"].versions[0].prices["api_calls"]
    assert price == UnitPrice(amount)
    assert isinstance(price.unit_price, Decimal)


@pytest.mark.parametrize("text", ["0.1", "1.5e-3", "2.0"])
def test_float_unit_price_is_rejected_with_a_quote_hint(tmp_path: Path, text: str) -> None:
    message = load_error(write(tmp_path, pricing(price=text)))

    assert "pricing.yaml: plans[0].versions[0].prices.api_calls.unit_price: " in message
    assert "is a floating-point number, which is not exact; quote it: unit_price: " in message


@pytest.mark.parametrize(
    ("text", "problem", "fix"),
    [
        ('"-0.01"', "'-0.01' is negative", "write a price of zero or more"),
        ('"NaN"', "'NaN' is not a finite number", 'write a quoted decimal such as "0.0001"'),
        ('"Infinity"', "'Infinity' is not a finite number", "write a quoted decimal"),
        ('"ten cents"', "'ten cents' is not a decimal number", "write a quoted decimal"),
        ("true", "True is not a price", "write a quoted decimal"),
        ("[1]", "[1] is not a price", "write a quoted decimal"),
        (
            '"0.0000000000001"',
            "'0.0000000000001' has more than 12 decimal places",
            "round it to at most 12",
        ),
    ],
)
def test_invalid_unit_price(tmp_path: Path, text: str, problem: str, fix: str) -> None:
    message = load_error(write(tmp_path, pricing(price=text)))

    assert f"pricing.yaml: plans[0].versions[0].prices.api_calls.unit_price: {problem}; " in message
    assert fix in message


def test_unknown_price_model_lists_supported_ones(tmp_path: Path) -> None:
    text = pricing().replace("model: per_unit", "model: graduated")

    message = load_error(write(tmp_path, text))

    assert (
        "pricing.yaml: plans[0].versions[0].prices.api_calls: model 'graduated' is not "
        "supported; use one of: per_unit" in message
    )


def test_price_without_model(tmp_path: Path) -> None:
    text = pricing().replace("model: per_unit, ", "")

    message = load_error(write(tmp_path, text))

    assert (
        "pricing.yaml: plans[0].versions[0].prices.api_calls: has no 'model' key; "
        "add model: with one of: per_unit" in message
    )


def test_misspelt_price_key_hides_the_union_tag(tmp_path: Path) -> None:
    text = pricing().replace("unit_price:", "unit_prize:")

    message = load_error(write(tmp_path, text))

    # pydantic puts the union tag 'per_unit' in the location; users never wrote it.
    assert "prices.api_calls.unit_prize: unknown key 'unit_prize'" in message
    assert "did you mean 'unit_price'? allowed keys: model, unit_price" in message
    assert "per_unit.unit" not in message


@pytest.mark.parametrize("currency", ["usd", "US", "EURO", "'123'"])
def test_invalid_currency(tmp_path: Path, currency: str) -> None:
    message = load_error(write(tmp_path, pricing(currency=currency)))

    assert "pricing.yaml: plans[0].currency: " in message
    assert "is not an ISO 4217 currency code; write three upper-case letters" in message


def test_plan_needs_a_version(tmp_path: Path) -> None:
    text = "plans:\n  - id: starter\n    currency: USD\n    versions: []\n"

    message = load_error(write(tmp_path, text))

    assert "pricing.yaml: plans[0].versions: needs at least one item; add one" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, pricing(tail="subscription: []\n")))

    assert (
        "pricing.yaml: subscription: unknown key 'subscription'; "
        "did you mean 'subscriptions'?" in message
    )


def test_duplicate_plan_ids(tmp_path: Path) -> None:
    one_plan = pricing()
    second = one_plan.removeprefix("plans:\n")

    message = load_error(write(tmp_path, one_plan + second))

    assert (
        "pricing.yaml: plans[1].id: 'starter' is already the id of plans[0]; "
        "give each plan its own id" in message
    )


def test_duplicate_version_names_and_start_times(tmp_path: Path) -> None:
    text = pricing(
        extra_versions="""\
      - version: "v1"
        effective_from: "2026-01-01T01:00:00+01:00"
        prices: {}
""",
    )

    lines = load_error(write(tmp_path, text)).splitlines()

    assert lines == [
        f"{tmp_path / 'pricing.yaml'}: plans[0].versions[1].version: 'v1' is already the name "
        "of plans[0].versions[0]; give each version of a plan its own name",
        f"{tmp_path / 'pricing.yaml'}: plans[0].versions[1].effective_from: "
        "plans[0].versions[0] starts at the same time; "
        "give each version of a plan its own effective_from",
    ]


def test_subscription_to_unknown_plan(tmp_path: Path) -> None:
    text = pricing(tail="subscriptions:\n  - { tenant: acme, plan: platinum }\n")

    message = load_error(write(tmp_path, text))

    assert (
        "pricing.yaml: subscriptions[0].plan: 'platinum' is not a plan in this file; "
        "use one of: starter" in message
    )


def test_unknown_default_plan(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "default_plan: free\n" + pricing()))

    assert (
        "pricing.yaml: default_plan: 'free' is not a plan in this file; "
        "use one of: starter, or remove default_plan" in message
    )


def test_duplicate_tenants(tmp_path: Path) -> None:
    text = pricing(
        tail="subscriptions:\n  - { tenant: acme, plan: starter }\n"
        "  - { tenant: acme, plan: starter }\n"
    )

    message = load_error(write(tmp_path, text))

    assert (
        "pricing.yaml: subscriptions[1].tenant: 'acme' is already subscribed in "
        "subscriptions[0]; keep one subscription per tenant" in message
    )


def test_subscription_needs_tenant_and_plan(tmp_path: Path) -> None:
    text = pricing(tail="subscriptions:\n  - { tenant: '' }\n")

    message = load_error(write(tmp_path, text))

    assert "pricing.yaml: subscriptions[0].tenant: must not be empty; write a value" in message
    assert "pricing.yaml: subscriptions[0].plan: this required key is missing; add it" in message


def test_priced_meter_must_exist(tmp_path: Path, example_meters: MeterCatalog) -> None:
    text = pricing().replace("api_calls:", "api_callz:")

    message = load_error(write(tmp_path, text), example_meters)

    assert (
        "pricing.yaml: plans[0].versions[0].prices.api_callz: 'api_callz' is not a meter in "
        "the meter catalog; use one of: active_users, api_calls, cpu_seconds, storage_gb, "
        "tokens" in message
    )


def test_priced_meter_is_not_checked_without_a_meter_catalog(tmp_path: Path) -> None:
    text = pricing().replace("api_calls:", "api_callz:")

    catalog = load_pricing_catalog(write(tmp_path, text))

    assert list(catalog.plans["starter"].versions[0].prices) == ["api_callz"]


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "pricing.yaml")

    assert "pricing.yaml: (file): file not found; check the path" in message


def test_unparsable_yaml(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, 'plans:\n  - id: "starter\n'))

    assert "pricing.yaml: line 3, column 1: invalid YAML" in message
    assert "fix the YAML syntax there" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "- starter\n"))

    assert "pricing.yaml: (top level): should be a mapping" in message
    assert "with the keys default_plan, plans, subscriptions" in message


def test_price_must_be_a_mapping(tmp_path: Path) -> None:
    text = pricing().replace('{ model: per_unit, unit_price: "0.0001" }', '"0.0001"')

    message = load_error(write(tmp_path, text))

    assert (
        "pricing.yaml: plans[0].versions[0].prices.api_calls: should be a mapping, not '0.0001'; "
        "write it as a mapping with the keys model, unit_price" in message
    )
