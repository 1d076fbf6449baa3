"""Loading the pricing catalog: the bundled example, exact prices, and every error."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.meter_catalog import EXAMPLE_METER_CATALOG, load_meter_catalog
from config.meters import MeterCatalog
from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    PackagePrice,
    PercentagePrice,
    PriceModel,
    Subscription,
    Tier,
    UnitPrice,
    VolumePrice,
)
from config.pricing_catalog import EXAMPLE_PRICING_CATALOG, load_pricing_catalog

JAN_2026_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOV_2026_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
MODELS = "per_unit, package, graduated, volume, percentage"


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

    assert sorted(catalog.plans) == ["enterprise", "pro", "starter"]
    assert catalog.default_plan == "starter"
    assert catalog.subscriptions == {
        "acme": Subscription("pro", anchor_day=15, timezone="Europe/Berlin"),
        "globex": Subscription("pro"),
        "initech": Subscription("pro"),
        "umbrella": Subscription("starter"),
    }
    assert {plan.id: plan.currency for plan in catalog.plans.values()} == {
        "starter": "USD",
        "pro": "USD",
        "enterprise": "EUR",
    }
    for plan_id in ("starter", "pro"):
        versions = catalog.plans[plan_id].versions
        assert [v.effective_from_ms for v in versions] == [JAN_2026_MS, NOV_2026_MS]
    for plan in catalog.plans.values():
        assert all(set(v.prices) <= {m.slug for m in example_meters.meters} for v in plan.versions)
    starter = catalog.plans["starter"]
    assert starter.versions[0].prices["api_calls"] == MeterPrice(
        UnitPrice(Decimal("0.0001")), free_allowance=Decimal(1000)
    )
    assert starter.versions[1].prices["api_calls"].model == UnitPrice(Decimal("0.00012"))


def test_example_catalog_shows_every_model_it_uses(example_meters: MeterCatalog) -> None:
    plans = load_pricing_catalog(EXAMPLE_PRICING_CATALOG, example_meters).plans
    starter, pro = plans["starter"].versions[-1], plans["pro"].versions[-1]
    enterprise = plans["enterprise"].versions[-1]

    assert isinstance(starter.prices["tokens"].model, GraduatedPrice)
    assert starter.prices["cpu_seconds"].maximum == Decimal(50)
    assert pro.prices["active_users"].model == PackagePrice(Decimal(10), Decimal("4.00"))
    assert (pro.fixed_fee, pro.minimum_commitment) == (Decimal(49), Decimal(100))
    assert isinstance(enterprise.prices["tokens"].model, VolumePrice)
    assert (starter.fixed_fee, starter.minimum_commitment) == (Decimal(0), None)


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
    assert price.model == UnitPrice(amount)
    assert isinstance(price.model.unit_price, Decimal)


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
    text = pricing().replace("model: per_unit", "model: tiered")

    message = load_error(write(tmp_path, text))

    assert (
        "pricing.yaml: plans[0].versions[0].prices.api_calls: model 'tiered' is not "
        f"supported; use one of: {MODELS}" in message
    )


def test_price_without_model(tmp_path: Path) -> None:
    text = pricing().replace("model: per_unit, ", "")

    message = load_error(write(tmp_path, text))

    assert (
        "pricing.yaml: plans[0].versions[0].prices.api_calls: has no 'model' key; "
        f"add model: with one of: {MODELS}" in message
    )


def test_misspelt_price_key_hides_the_union_tag(tmp_path: Path) -> None:
    text = pricing().replace("unit_price:", "unit_prize:")

    message = load_error(write(tmp_path, text))

    # pydantic puts the union tag 'per_unit' in the location; users never wrote it.
    assert "prices.api_calls.unit_prize: unknown key 'unit_prize'" in message
    assert (
        "did you mean 'unit_price'? allowed keys: model, free_allowance, maximum, minimum, "
        "discount_percent, unit_price" in message
    )
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
        "write it as 'key: value' lines" in message
    )


def priced(price: str, version_keys: str = "") -> str:
    """A one-plan pricing file whose only price, for api_calls, is the flow mapping ``price``."""
    return f"""\
plans:
  - id: starter
    currency: USD
    versions:
      - version: "v1"
        effective_from: "2026-01-01T00:00:00Z"
{version_keys}        prices:
          api_calls: {price}
"""


def load_price(tmp_path: Path, price: str) -> MeterPrice:
    catalog = load_pricing_catalog(write(tmp_path, priced(price)))
    return catalog.plans["starter"].versions[0].prices["api_calls"]


PRICE_AT = "pricing.yaml: plans[0].versions[0].prices.api_calls"


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ('{ model: per_unit, unit_price: "0.5" }', UnitPrice(Decimal("0.5"))),
        (
            '{ model: package, package_size: 100, package_price: "5" }',
            PackagePrice(Decimal(100), Decimal(5)),
        ),
        (
            '{ model: package, package_size: "0.5", package_price: "0.000000000001" }',
            PackagePrice(Decimal("0.5"), Decimal("1E-12")),
        ),
        (
            "{ model: graduated, tiers: ["
            '{ up_to: "1000", unit_price: "0.01" }, '
            '{ up_to: 5000, unit_price: "0.008", flat_price: 3 }, '
            '{ up_to: null, unit_price: "0.005", flat_price: "2" }] }',
            GraduatedPrice(
                (
                    Tier(Decimal(1000), Decimal("0.01")),
                    Tier(Decimal(5000), Decimal("0.008"), Decimal(3)),
                    Tier(None, Decimal("0.005"), Decimal(2)),
                )
            ),
        ),
        (
            '{ model: volume, tiers: [{ up_to: "0.000000001", unit_price: "1" }, '
            '{ unit_price: "0.1" }] }',
            VolumePrice((Tier(Decimal("1E-9"), Decimal(1)), Tier(None, Decimal("0.1")))),
        ),
        (
            '{ model: volume, tiers: [{ unit_price: "0.1" }] }',
            VolumePrice((Tier(None, Decimal("0.1")),)),
        ),
        ('{ model: percentage, rate_percent: "2.5" }', PercentagePrice(Decimal("2.5"))),
        ("{ model: percentage, rate_percent: 0 }", PercentagePrice(Decimal(0))),
        ("{ model: percentage, rate_percent: 100 }", PercentagePrice(Decimal(100))),
        # Above 100 is a markup.
        ("{ model: percentage, rate_percent: 150 }", PercentagePrice(Decimal(150))),
        (
            '{ model: percentage, rate_percent: "1.2", fixed_fee_per_event: "0.10", '
            'free_events: 3, free_amount: "500", min_fee_per_event: "0.2", '
            'max_fee_per_event: "5" }',
            PercentagePrice(
                Decimal("1.2"),
                fixed_fee=Decimal("0.10"),
                free_events=3,
                free_amount=Decimal(500),
                min_fee=Decimal("0.2"),
                max_fee=Decimal(5),
            ),
        ),
        (
            '{ model: package, package_size: 60, package_price: "4.5", round: down }',
            PackagePrice(Decimal(60), Decimal("4.5"), round_down=True),
        ),
        (
            '{ model: package, package_size: 60, package_price: "4.5", round: up }',
            PackagePrice(Decimal(60), Decimal("4.5")),
        ),
        (
            # Orb publishes bounded tier tables: usage beyond 1000 stays in the last tier.
            '{ model: graduated, tiers: [{ up_to: 100, unit_price: "1" }, '
            '{ up_to: 1000, unit_price: "0.5" }] }',
            GraduatedPrice((Tier(Decimal(100), Decimal(1)), Tier(Decimal(1000), Decimal("0.5")))),
        ),
        (
            '{ model: percentage, rate_percent: "0.0000000001" }',
            PercentagePrice(Decimal("1E-10")),
        ),
    ],
)
def test_each_price_model_loads(tmp_path: Path, text: str, model: PriceModel) -> None:
    price = load_price(tmp_path, text)

    assert price == MeterPrice(model)


def test_allowance_cap_and_minimum_load_and_default(tmp_path: Path) -> None:
    text = (
        '{ model: per_unit, unit_price: "1", free_allowance: "1000.000000001", '
        'maximum: "50", minimum: 50 }'
    )

    price = load_price(tmp_path, text)
    plain = load_price(tmp_path, '{ model: per_unit, unit_price: "1" }')

    assert price == MeterPrice(
        UnitPrice(Decimal(1)),
        free_allowance=Decimal("1000.000000001"),
        maximum=Decimal(50),
        minimum=Decimal(50),
    )
    assert (plain.free_allowance, plain.maximum, plain.minimum) == (Decimal(0), None, None)


def test_fixed_fee_and_minimum_commitment_load_and_default(tmp_path: Path) -> None:
    keys = '        fixed_fee: "49.99"\n        minimum_commitment: 100\n'
    price = '{ model: per_unit, unit_price: "1" }'

    version = (
        load_pricing_catalog(write(tmp_path, priced(price, keys))).plans["starter"].versions[0]
    )
    bare = load_pricing_catalog(write(tmp_path, priced(price))).plans["starter"].versions[0]

    assert (version.fixed_fee, version.minimum_commitment) == (Decimal("49.99"), Decimal(100))
    assert (bare.fixed_fee, bare.minimum_commitment) == (Decimal(0), None)


@pytest.mark.parametrize(
    ("text", "field", "key", "value"),
    [
        ("{ model: package, package_size: 10, package_price: 5.0 }", "", "package_price", "5.0"),
        ("{ model: package, package_size: 10.0, package_price: 5 }", "", "package_size", "10.0"),
        (
            '{ model: graduated, tiers: [{ up_to: 100.5, unit_price: "1" }, { unit_price: "1" }] }',
            ".tiers[0]",
            "up_to",
            "100.5",
        ),
        (
            '{ model: volume, tiers: [{ unit_price: "1", flat_price: 0.5 }] }',
            ".tiers[0]",
            "flat_price",
            "0.5",
        ),
        ('{ model: per_unit, unit_price: "1", free_allowance: 0.5 }', "", "free_allowance", "0.5"),
        ('{ model: per_unit, unit_price: "1", maximum: 1.5 }', "", "maximum", "1.5"),
        ('{ model: per_unit, unit_price: "1", minimum: 1.5 }', "", "minimum", "1.5"),
        ("{ model: percentage, rate_percent: 2.5 }", "", "rate_percent", "2.5"),
    ],
)
def test_float_is_rejected_with_a_quote_hint_naming_the_key(
    tmp_path: Path, text: str, field: str, key: str, value: str
) -> None:
    message = load_error(write(tmp_path, priced(text)))

    assert (
        f"{PRICE_AT}{field}.{key}: {value} is a floating-point number, which is not exact; "
        f'quote it: {key}: "{value}"' in message
    )


@pytest.mark.parametrize(
    ("keys", "key"),
    [
        ("        fixed_fee: 49.5\n", "fixed_fee"),
        ("        minimum_commitment: 0.1\n", "minimum_commitment"),
    ],
)
def test_float_version_fee_is_rejected(tmp_path: Path, keys: str, key: str) -> None:
    text = priced('{ model: per_unit, unit_price: "1" }', keys)

    message = load_error(write(tmp_path, text))

    assert f"pricing.yaml: plans[0].versions[0].{key}: " in message
    assert f'which is not exact; quote it: {key}: "' in message


@pytest.mark.parametrize(
    ("text", "field", "problem", "fix"),
    [
        (
            '{ model: per_unit, unit_price: "1", free_allowance: "0.0000000001" }',
            "free_allowance",
            "'0.0000000001' has more than 9 decimal places",
            "round it to at most 9",
        ),
        (
            '{ model: graduated, tiers: [{ up_to: "1.0000000001", unit_price: "1" }, '
            '{ unit_price: "1" }] }',
            "tiers[0].up_to",
            "'1.0000000001' has more than 9 decimal places",
            "round it to at most 9",
        ),
        (
            '{ model: package, package_size: "0.0000000001", package_price: "1" }',
            "package_size",
            "'0.0000000001' has more than 9 decimal places",
            "round it to at most 9",
        ),
        (
            '{ model: per_unit, unit_price: "1", maximum: "0.0000000000001" }',
            "maximum",
            "'0.0000000000001' has more than 12 decimal places",
            "round it to at most 12",
        ),
        (
            '{ model: volume, tiers: [{ unit_price: "1", flat_price: "0.0000000000001" }] }',
            "tiers[0].flat_price",
            "'0.0000000000001' has more than 12 decimal places",
            "round it to at most 12",
        ),
        (
            '{ model: percentage, rate_percent: "0.00000000001" }',
            "rate_percent",
            "'0.00000000001' has more than 10 decimal places",
            "round it to at most 10",
        ),
        (
            '{ model: per_unit, unit_price: "1", free_allowance: "-1" }',
            "free_allowance",
            "'-1' is negative",
            "write a quantity of zero or more",
        ),
        (
            '{ model: package, package_size: 0, package_price: "1" }',
            "package_size",
            "must be above zero",
            "write the number of units in one package",
        ),
        (
            '{ model: package, package_size: "0.000", package_price: "1" }',
            "package_size",
            "must be above zero",
            "write the number of units in one package",
        ),
        (
            '{ model: per_unit, unit_price: "1", discount_percent: "100.5" }',
            "discount_percent",
            "100.5 is more than 100",
            "write a percentage from 0 to 100",
        ),
        (
            '{ model: per_unit, unit_price: "1", discount_percent: "12.34567" }',
            "discount_percent",
            "'12.34567' has more than 4 decimal places",
            "round it to at most 4",
        ),
        (
            '{ model: per_unit, unit_price: "0.0000000001", discount_percent: "12.5" }',
            "unit_price",
            "0.0000000001 has too many decimal places for discount_percent 12.5 (the "
            "discounted amount would not be exact)",
            "round unit_price to at most 9 decimal places, or use a discount with fewer",
        ),
        (
            '{ model: percentage, rate_percent: "1", free_events: -1 }',
            "free_events",
            "-1 is not a whole number of events",
            "write 0 or more, e.g. 3",
        ),
        (
            '{ model: percentage, rate_percent: "1", min_fee_per_event: "2", '
            'max_fee_per_event: "1" }',
            "min_fee_per_event",
            "2 is more than max_fee_per_event 1",
            "lower min_fee_per_event to at most max_fee_per_event",
        ),
        (
            '{ model: percentage, rate_percent: "1", fixed_fee_per_event: "0.3", '
            'free_allowance: "500" }',
            "free_allowance",
            "a per-event percentage price takes its free amount as free_amount",
            'write free_amount: "500" instead',
        ),
        (
            '{ model: percentage, rate_percent: "1", free_amount: "500", free_allowance: "100" }',
            "free_allowance",
            "free_allowance and free_amount would both make part of the amount free "
            "(counted twice)",
            'write the whole free amount once, as free_amount: "600", and drop free_allowance',
        ),
        (
            '{ model: package, package_size: 10, package_price: "1", round: sideways }',
            "round",
            "Input should be 'up' or 'down' (got 'sideways')",
            "correct the value",
        ),
        (
            '{ model: percentage, rate_percent: "-1" }',
            "rate_percent",
            "'-1' is negative",
            "write a percentage of zero or more",
        ),
        (
            '{ model: graduated, tiers: [{ up_to: "NaN", unit_price: "1" }, { unit_price: "1" }] }',
            "tiers[0].up_to",
            "'NaN' is not a finite number",
            'write a quoted decimal such as "1000"',
        ),
        (
            '{ model: per_unit, unit_price: "1", minimum: true }',
            "minimum",
            "True is not a price",
            'write a quoted decimal such as "0.0001"',
        ),
        (
            "{ model: package, package_price: '1' }",
            "package_size",
            "this required key is missing",
            "add it",
        ),
        (
            "{ model: graduated, tiers: [{ up_to: 10 }, { unit_price: '1' }] }",
            "tiers[0].unit_price",
            "this required key is missing",
            "add it",
        ),
        (
            "{ model: volume, tiers: [] }",
            "tiers",
            "needs at least one item",
            "add one",
        ),
        (
            "{ model: graduated }",
            "tiers",
            "this required key is missing",
            "add it",
        ),
    ],
)
def test_invalid_price_field(tmp_path: Path, text: str, field: str, problem: str, fix: str) -> None:
    message = load_error(write(tmp_path, priced(text)))

    assert f"{PRICE_AT}.{field}: {problem}; {fix}" in message


def test_a_misspelt_required_key_is_matched_with_the_missing_one(tmp_path: Path) -> None:
    text = '{ model: package, package_size: 100, package_amount: "5" }'

    message = load_error(write(tmp_path, priced(text)))

    # Not "package_size", the closest allowed key: that one is already there.
    assert f"{PRICE_AT}.package_amount: unknown key 'package_amount'; did you mean " in message
    assert "did you mean 'package_price'?" in message
    assert f"{PRICE_AT}.package_price: this required key is missing; add it" in message


def test_a_discount_loads(tmp_path: Path) -> None:
    price = load_price(
        tmp_path, '{ model: per_unit, unit_price: "0.01", discount_percent: "12.5" }'
    )

    assert price == MeterPrice(UnitPrice(Decimal("0.01")), discount_percent=Decimal("12.5"))


def test_misspelt_tier_key(tmp_path: Path) -> None:
    text = '{ model: volume, tiers: [{ up_too: 10, unit_price: "1" }, { unit_price: "1" }] }'

    message = load_error(write(tmp_path, priced(text)))

    assert (
        f"{PRICE_AT}.tiers[0].up_too: unknown key 'up_too'; did you mean 'up_to'? "
        "allowed keys: up_to, unit_price, flat_price" in message
    )


@pytest.mark.parametrize("model", ["graduated", "volume"])
@pytest.mark.parametrize(
    ("tiers", "lines"),
    [
        (
            "[{ unit_price: '1' }, { up_to: 100, unit_price: '1' }, { unit_price: '1' }]",
            [
                "tiers[0].up_to: only the last tier may have no upper bound; "
                "give this tier an up_to, or move it to the end"
            ],
        ),
        (
            "[{ up_to: 100, unit_price: '1' }, { up_to: '1E+2', unit_price: '1' }, "
            "{ up_to: 50, unit_price: '1' }, { unit_price: '1' }]",
            [
                "tiers[1].up_to: 100 is not above tiers[0].up_to (100); "
                "make up_to rise from tier to tier",
                "tiers[2].up_to: 50 is not above tiers[1].up_to (100); "
                "make up_to rise from tier to tier",
            ],
        ),
        (
            "[{ up_to: 0, unit_price: '1' }, { unit_price: '1' }]",
            ["tiers[0].up_to: 0 is not above zero; write an up_to above zero"],
        ),
    ],
)
def test_tier_bounds(tmp_path: Path, model: str, tiers: str, lines: list[str]) -> None:
    text = priced(f"{{ model: {model}, tiers: {tiers} }}")

    message = load_error(write(tmp_path, text))

    assert message.splitlines() == [f"{tmp_path / PRICE_AT}.{line}" for line in lines]


def test_minimum_above_maximum(tmp_path: Path) -> None:
    text = '{ model: per_unit, unit_price: "1", maximum: "10", minimum: "10.5" }'

    message = load_error(write(tmp_path, priced(text)))

    assert (
        f"{PRICE_AT}.minimum: 10.5 is more than maximum 10; "
        "lower minimum to at most maximum, or raise maximum" in message
    )


def subscribed(entry: str) -> str:
    return pricing(tail=f"subscriptions:\n  - {{ tenant: acme, plan: starter{entry} }}\n")


def test_subscription_defaults_to_the_1st_in_utc(tmp_path: Path) -> None:
    catalog = load_pricing_catalog(write(tmp_path, subscribed("")))

    assert catalog.subscriptions == {"acme": Subscription("starter", 1, "UTC")}


@pytest.mark.parametrize(
    ("entry", "subscription"),
    [
        (
            ", anchor_day: 28, timezone: America/New_York",
            Subscription("starter", 28, "America/New_York"),
        ),
        (", anchor_day: 1, timezone: 'Asia/Kolkata'", Subscription("starter", 1, "Asia/Kolkata")),
        (", timezone: Etc/GMT+5", Subscription("starter", 1, "Etc/GMT+5")),
    ],
)
def test_subscription_anchor_day_and_timezone(
    tmp_path: Path, entry: str, subscription: Subscription
) -> None:
    catalog = load_pricing_catalog(write(tmp_path, subscribed(entry)))

    assert catalog.subscriptions["acme"] == subscription


@pytest.mark.parametrize(
    ("text", "shown"),
    [("0", "0"), ("29", "29"), ("31", "31"), ("'15'", "'15'"), ("true", "True"), ("1.5", "1.5")],
)
def test_invalid_anchor_day(tmp_path: Path, text: str, shown: str) -> None:
    message = load_error(write(tmp_path, subscribed(f", anchor_day: {text}")))

    assert (
        f"pricing.yaml: subscriptions[0].anchor_day: {shown} is not a day from 1 to 28; "
        "write a whole number from 1 to 28 (every month has those days)" in message
    )


@pytest.mark.parametrize(
    ("text", "problem", "suggestion"),
    [
        ("Berlin", "'Berlin' is not an IANA time zone", "did you mean 'Europe/Berlin'? otherwise "),
        (
            "europe/berlin",
            "'europe/berlin' is not an IANA time zone",
            "did you mean 'Europe/Berlin'? otherwise ",
        ),
        ("Europe", "'Europe' is not an IANA time zone", ""),
        ("../../etc/passwd", "'../../etc/passwd' is not an IANA time zone", ""),
        ("/usr/share/zoneinfo/UTC", "'/usr/share/zoneinfo/UTC' is not an IANA time zone", ""),
        ("''", "'' is not a time zone name", ""),
        ("5", "5 is not a time zone name", ""),
    ],
)
def test_invalid_timezone(tmp_path: Path, text: str, problem: str, suggestion: str) -> None:
    message = load_error(write(tmp_path, subscribed(f", timezone: {text}")))

    assert f"pricing.yaml: subscriptions[0].timezone: {problem}; {suggestion}" in message
    assert 'write an IANA name such as "Europe/Berlin" or "UTC"' in message


def test_misspelt_subscription_key(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, subscribed(", anchor: 15")))

    assert (
        "pricing.yaml: subscriptions[0].anchor: unknown key 'anchor'; did you mean "
        "'anchor_day'? allowed keys: tenant, plan, anchor_day, timezone" in message
    )


def test_negative_zero_loses_its_sign(tmp_path: Path) -> None:
    price = load_price(tmp_path, '{ model: per_unit, unit_price: "-0", maximum: "-0.00" }')

    assert isinstance(price.model, UnitPrice)
    assert not price.model.unit_price.is_signed()
    assert price.maximum is not None
    assert not price.maximum.is_signed()


def test_per_event_terms_need_a_sum_meter(tmp_path: Path, example_meters: MeterCatalog) -> None:
    text = '{ model: percentage, rate_percent: "1", fixed_fee_per_event: "0.1" }'

    message = load_error(write(tmp_path, priced(text)), example_meters)

    assert (
        f"{PRICE_AT}.model: per-event percentage terms need a SUM meter; 'api_calls' is COUNT; "
        "price it on a meter that sums transaction amounts, or drop the per-event terms"
    ) in message
