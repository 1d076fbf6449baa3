"""Load the pricing catalog file (YAML, or JSON by extension) into a PricingCatalog."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator

from config.errors import (
    ConfigIssue,
    FieldProblem,
    config_error,
    duplicates,
    field_path,
    load_catalog_file,
)
from config.meters import MeterCatalog
from config.pricing import MeterPrice, Plan, PlanVersion, PricingCatalog, UnitPrice

# Bundled with the package; what `meterwax run` uses when given no catalog paths.
EXAMPLE_PRICING_CATALOG = Path(__file__).parent / "examples" / "pricing.yaml"

_MAX_FRACTION_DIGITS = 12
_PRICE_EXAMPLE = 'write a quoted decimal such as "0.0001"'
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_TIME_EXAMPLE = 'write it like "2026-01-01T00:00:00Z" (Z or an offset such as +02:00)'
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURRENCY = re.compile(r"[A-Z]{3}")


def _amount(value: object) -> Decimal:
    """An exact, finite, non-negative price with at most 12 decimal places."""
    if isinstance(value, float):
        # A float such as 0.1 has already lost its exact value by the time we see it.
        problem = f"{value!r} is a floating-point number, which is not exact"
        raise FieldProblem(problem, f'quote it: unit_price: "{value}"')
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FieldProblem(f"{value!r} is not a price", _PRICE_EXAMPLE)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise FieldProblem(f"{value!r} is not a decimal number", _PRICE_EXAMPLE) from None
    if not amount.is_finite():
        raise FieldProblem(f"{value!r} is not a finite number", _PRICE_EXAMPLE)
    if amount < 0:
        raise FieldProblem(f"{value!r} is negative", "write a price of zero or more")
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > _MAX_FRACTION_DIGITS:
        problem = f"{value!r} has more than {_MAX_FRACTION_DIGITS} decimal places"
        raise FieldProblem(problem, f"round it to at most {_MAX_FRACTION_DIGITS}")
    return amount


def _epoch_ms(value: object) -> int:
    """UTC epoch milliseconds of an RFC 3339 time that carries its offset."""
    return (_moment(value) - _EPOCH) // timedelta(milliseconds=1)


def _moment(value: object) -> datetime:
    # Unquoted YAML timestamps arrive already parsed; keep them only if they have an offset.
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    shown = repr(value) if isinstance(value, str) else str(value)
    if not (isinstance(value, str) and _RFC3339.fullmatch(value)):
        raise FieldProblem(f"{shown} is not an RFC 3339 time with an offset", _TIME_EXAMPLE)
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise FieldProblem(f"{shown} is not a real date and time ({exc})", _TIME_EXAMPLE) from None


def _currency(value: str) -> str:
    if not _CURRENCY.fullmatch(value):
        problem = f"{value!r} is not an ISO 4217 currency code"
        raise FieldProblem(problem, "write three upper-case letters such as USD or EUR")
    return value


class _Spec(BaseModel):
    # Unknown keys are errors so that a misspelt key is reported, not ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PerUnitSpec(_Spec):
    """``{model: per_unit, unit_price: "0.0001"}``."""

    model: Literal["per_unit"]
    unit_price: Annotated[Decimal, PlainValidator(_amount)]


# Discriminated on ``model`` so package, graduated and volume prices can join as members;
# a one-member union cannot be written with ``|``, hence Union.
_PriceSpec = Annotated[Union[_PerUnitSpec], Field(discriminator="model")]  # noqa: UP007


class _VersionSpec(_Spec):
    """One dated price list; ``effective_from`` holds UTC epoch ms once validated."""

    version: str = Field(min_length=1)
    effective_from: Annotated[int, PlainValidator(_epoch_ms)]
    prices: dict[str, _PriceSpec]


class _PlanSpec(_Spec):
    id: str = Field(min_length=1)
    currency: Annotated[str, AfterValidator(_currency)]
    versions: list[_VersionSpec] = Field(min_length=1)


class _SubscriptionSpec(_Spec):
    tenant: str = Field(min_length=1)
    plan: str = Field(min_length=1)


class _PricingFile(_Spec):
    """The whole pricing catalog file."""

    default_plan: Annotated[str, Field(min_length=1)] | None = None
    plans: list[_PlanSpec] = Field(min_length=1)
    subscriptions: list[_SubscriptionSpec] = Field(default_factory=list)


def load_pricing_catalog(path: Path, meters: MeterCatalog | None = None) -> PricingCatalog:
    """Load and validate the pricing catalog at ``path``.

    With ``meters``, every priced meter slug must be in that catalog. Raises
    ConfigError naming the file, the field and the fix for every problem found.
    """
    spec = load_catalog_file(path, _PricingFile)
    issues = [
        *_plan_issues(spec.plans),
        *_subscription_issues(spec),
        *(_unknown_meter_issues(spec.plans, meters) if meters is not None else []),
    ]
    if issues:
        raise config_error(path, issues)
    return PricingCatalog(
        plans={plan.id: _plan(plan) for plan in spec.plans},
        subscriptions={sub.tenant: sub.plan for sub in spec.subscriptions},
        default_plan=spec.default_plan,
    )


def _plan_issues(plans: list[_PlanSpec]) -> list[ConfigIssue]:
    ids = [plan.id for plan in plans]
    issues = [
        ConfigIssue(
            f"plans[{index}].id",
            f"{ids[index]!r} is already the id of plans[{first}]",
            "give each plan its own id",
        )
        for index, first in duplicates(ids)
    ]
    for index, plan in enumerate(plans):
        issues += _version_issues(f"plans[{index}].versions", plan.versions)
    return issues


def _version_issues(field: str, versions: list[_VersionSpec]) -> list[ConfigIssue]:
    names = [version.version for version in versions]
    starts = [version.effective_from for version in versions]
    return [
        *(
            ConfigIssue(
                f"{field}[{index}].version",
                f"{names[index]!r} is already the name of {field}[{first}]",
                "give each version of a plan its own name",
            )
            for index, first in duplicates(names)
        ),
        *(
            ConfigIssue(
                f"{field}[{index}].effective_from",
                f"{field}[{first}] starts at the same time",
                "give each version of a plan its own effective_from",
            )
            for index, first in duplicates(starts)
        ),
    ]


def _subscription_issues(spec: _PricingFile) -> list[ConfigIssue]:
    known = {plan.id for plan in spec.plans}
    fix = f"use one of: {', '.join(sorted(known))}"
    issues = []
    if spec.default_plan is not None and spec.default_plan not in known:
        problem = f"{spec.default_plan!r} is not a plan in this file"
        issues.append(ConfigIssue("default_plan", problem, f"{fix}, or remove default_plan"))
    for index, sub in enumerate(spec.subscriptions):
        if sub.plan not in known:
            problem = f"{sub.plan!r} is not a plan in this file"
            issues.append(ConfigIssue(f"subscriptions[{index}].plan", problem, fix))
    tenants = [sub.tenant for sub in spec.subscriptions]
    issues += [
        ConfigIssue(
            f"subscriptions[{index}].tenant",
            f"{tenants[index]!r} is already subscribed in subscriptions[{first}]",
            "keep one subscription per tenant",
        )
        for index, first in duplicates(tenants)
    ]
    return issues


def _unknown_meter_issues(plans: list[_PlanSpec], meters: MeterCatalog) -> list[ConfigIssue]:
    known = sorted(meter.slug for meter in meters.meters)
    return [
        ConfigIssue(
            field_path("plans", p, "versions", v, "prices", slug),
            f"{slug!r} is not a meter in the meter catalog",
            f"use one of: {', '.join(known)}",
        )
        for p, plan in enumerate(plans)
        for v, version in enumerate(plan.versions)
        for slug in version.prices
        if slug not in known
    ]


def _plan(spec: _PlanSpec) -> Plan:
    versions = sorted(spec.versions, key=lambda version: version.effective_from)
    return Plan(
        id=spec.id,
        currency=spec.currency,
        versions=tuple(
            PlanVersion(
                version=version.version,
                effective_from_ms=version.effective_from,
                prices={slug: _price(price) for slug, price in version.prices.items()},
            )
            for version in versions
        ),
    )


def _price(spec: _PriceSpec) -> MeterPrice:
    return UnitPrice(unit_price=spec.unit_price)
