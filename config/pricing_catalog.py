"""Load the pricing catalog file (YAML, or JSON by extension) into a PricingCatalog."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    model_validator,
)

from config.errors import (
    ConfigIssue,
    FieldProblem,
    config_error,
    duplicates,
    field_path,
    load_catalog_file,
)
from config.meters import Aggregation, MeterCatalog
from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    PackagePrice,
    PercentagePrice,
    Plan,
    PlanVersion,
    PriceModel,
    PricingCatalog,
    Quota,
    Subscription,
    Tier,
    UnitPrice,
    VolumePrice,
)

# Bundled with the package; what `meterwax run` uses when given no catalog paths.
EXAMPLE_PRICING_CATALOG = Path(__file__).parent / "examples" / "pricing.yaml"

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_TIME_EXAMPLE = 'write it like "2026-01-01T00:00:00Z" (Z or an offset such as +02:00)'
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURRENCY = re.compile(r"[A-Z]{3}")
_TIMEZONE_EXAMPLE = 'write an IANA name such as "Europe/Berlin" or "UTC"'
# Every month has days 1..28, so a period anchored on one starts on that day every month.
_LAST_ANCHOR_DAY = 28


def _decimal(value: object, key: str, noun: str, places: int, example: str) -> Decimal:
    """An exact, finite, non-negative decimal with at most ``places`` decimal places."""
    if isinstance(value, float):
        # A float such as 0.1 has already lost its exact value by the time we see it.
        problem = f"{value!r} is a floating-point number, which is not exact"
        raise FieldProblem(problem, f'quote it: {key}: "{value}"')
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FieldProblem(f"{value!r} is not a {noun}", example)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise FieldProblem(f"{value!r} is not a decimal number", example) from None
    if not amount.is_finite():
        raise FieldProblem(f"{value!r} is not a finite number", example)
    if amount < 0:
        raise FieldProblem(f"{value!r} is negative", f"write a {noun} of zero or more")
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        problem = f"{value!r} has more than {places} decimal places"
        raise FieldProblem(problem, f"round it to at most {places}")
    # "-0" passes the sign check; drop its sign so that no amount comes out as -0.
    return amount.copy_abs()


def _number(noun: str, places: int, example: str) -> PlainValidator:
    """A ``_decimal`` validator whose float hint names the key being validated."""

    def parse(value: object, info: ValidationInfo) -> Decimal:
        return _decimal(value, info.field_name or noun, noun, places, example)

    return PlainValidator(parse)


def _above_zero(value: Decimal) -> Decimal:
    if not value:
        raise FieldProblem("must be above zero", "write the number of units in one package")
    return value


def _at_most_100(value: Decimal) -> Decimal:
    if value > 100:
        raise FieldProblem(f"{_plain(value)} is more than 100", "write a percentage from 0 to 100")
    return value


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FieldProblem(f"{value!r} is not a whole number of events", "write 0 or more, e.g. 3")
    return value


# Prices have at most 12 decimal places and quantities 9 (like event values), so an
# amount has at most 21: the scale of the amount columns in ClickHouse.
_Price = Annotated[Decimal, _number("price", 12, 'write a quoted decimal such as "0.0001"')]
_Quantity = Annotated[Decimal, _number("quantity", 9, 'write a quoted decimal such as "1000"')]
_PackageSize = Annotated[_Quantity, AfterValidator(_above_zero)]
# rate_percent / 100 is the price of one unit: two places fewer keep that within 12.
# Above 100 is a markup (150 charges 1.5 times the amount).
_Percent = Annotated[Decimal, _number("percentage", 10, 'write a quoted decimal such as "2.5"')]
# A discount keeps (100 - d) / 100 of the cost: at most 6 decimal places, taken from the prices'.
_DISCOUNT_PLACES = 4
_Discount = Annotated[
    Decimal,
    _number("percentage", _DISCOUNT_PLACES, 'write a quoted decimal such as "12.5"'),
    AfterValidator(_at_most_100),
]


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


def _anchor_day(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _LAST_ANCHOR_DAY:
        problem = f"{value!r} is not a day from 1 to {_LAST_ANCHOR_DAY}"
        fix = f"write a whole number from 1 to {_LAST_ANCHOR_DAY} (every month has those days)"
        raise FieldProblem(problem, fix)
    return value


def _timezone(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise FieldProblem(f"{value!r} is not a time zone name", _TIMEZONE_EXAMPLE)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # Unknown names raise ZoneInfoNotFoundError; folders ("Europe") and paths the others.
        close = difflib.get_close_matches(value, available_timezones(), n=1)
        hint = f"did you mean {close[0]!r}? otherwise " if close else ""
        raise FieldProblem(
            f"{value!r} is not an IANA time zone", hint + _TIMEZONE_EXAMPLE
        ) from None
    return value


class _Spec(BaseModel):
    # Unknown keys are errors so that a misspelt key is reported, not ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _MeterPriceSpec(_Spec):
    """The keys beside ``model`` that every price takes; each model narrows ``model`` to its tag."""

    model: str
    free_allowance: _Quantity = Decimal(0)
    maximum: _Price | None = None
    minimum: _Price | None = None
    discount_percent: _Discount = Decimal(0)


class _PerUnitSpec(_MeterPriceSpec):
    """``{model: per_unit, unit_price: "0.0001"}``."""

    model: Literal["per_unit"]
    unit_price: _Price


class _PackageSpec(_MeterPriceSpec):
    """``{model: package, package_size: 100, package_price: "5", round: up}``."""

    model: Literal["package"]
    package_size: _PackageSize
    package_price: _Price
    # up: a started package is paid in full; down: only complete packages (Stripe's round: down).
    round: Literal["up", "down"] = "up"


class _TierSpec(_Spec):
    """One tier; the last may leave out ``up_to`` (a bounded last tier goes on at its prices)."""

    up_to: _Quantity | None = None
    unit_price: _Price
    flat_price: _Price = Decimal(0)


class _GraduatedSpec(_MeterPriceSpec):
    """``{model: graduated, tiers: [{up_to: 1000, unit_price: "0.01"}, {unit_price: ...}]}``."""

    model: Literal["graduated"]
    tiers: list[_TierSpec] = Field(min_length=1)


class _VolumeSpec(_MeterPriceSpec):
    """``{model: volume, tiers: [...]}``, written like graduated tiers."""

    model: Literal["volume"]
    tiers: list[_TierSpec] = Field(min_length=1)


class _PercentageSpec(_MeterPriceSpec):
    """``{model: percentage, rate_percent: "2.5"}``, with Lago's optional per-event terms."""

    model: Literal["percentage"]
    rate_percent: _Percent
    fixed_fee_per_event: _Price = Decimal(0)
    free_events: Annotated[int, PlainValidator(_whole)] | None = None
    free_amount: _Quantity | None = None
    min_fee_per_event: _Price | None = None
    max_fee_per_event: _Price | None = None


_AnyPriceSpec = _PerUnitSpec | _PackageSpec | _GraduatedSpec | _VolumeSpec | _PercentageSpec
_PriceSpec = Annotated[_AnyPriceSpec, Field(discriminator="model")]


class _QuotaSpec(_Spec):
    """``{soft_limit: "800000", hard_limit: "1000000", thresholds: [50, 80, 100]}``."""

    soft_limit: _Quantity | None = None
    hard_limit: _Quantity | None = None
    thresholds: list[_Quantity] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> _QuotaSpec:
        if self.soft_limit is None and self.hard_limit is None:
            raise FieldProblem("a quota needs a limit", "set soft_limit, hard_limit or both")
        if (
            self.soft_limit is not None
            and self.hard_limit is not None
            and self.soft_limit > self.hard_limit
        ):
            raise FieldProblem(
                f"soft_limit {self.soft_limit} is above hard_limit {self.hard_limit}",
                "make the soft limit the lower one",
            )
        if any(not 0 < t <= 1000 for t in self.thresholds):
            raise FieldProblem(
                "thresholds are percentages of the soft limit", "use values like 50, 80, 100"
            )
        return self


class _VersionSpec(_Spec):
    """One dated price list; ``effective_from`` holds UTC epoch ms once validated."""

    version: str = Field(min_length=1)
    effective_from: Annotated[int, PlainValidator(_epoch_ms)]
    prices: dict[str, _PriceSpec]
    fixed_fee: _Price = Decimal(0)
    minimum_commitment: _Price | None = None
    quotas: dict[str, _QuotaSpec] = Field(default_factory=dict)


class _PlanSpec(_Spec):
    id: str = Field(min_length=1)
    currency: Annotated[str, AfterValidator(_currency)]
    versions: list[_VersionSpec] = Field(min_length=1)


class _SubscriptionSpec(_Spec):
    tenant: str = Field(min_length=1)
    plan: str = Field(min_length=1)
    anchor_day: Annotated[int, PlainValidator(_anchor_day)] = 1
    timezone: Annotated[str, PlainValidator(_timezone)] = "UTC"


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
        *_price_issues(spec.plans),
        *_subscription_issues(spec),
        *(_unknown_meter_issues(spec.plans, meters) if meters is not None else []),
        *(_per_event_meter_issues(spec.plans, meters) if meters is not None else []),
    ]
    if issues:
        raise config_error(path, issues)
    return PricingCatalog(
        plans={plan.id: _plan(plan) for plan in spec.plans},
        subscriptions={
            sub.tenant: Subscription(sub.plan, sub.anchor_day, sub.timezone)
            for sub in spec.subscriptions
        },
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


def _per_event_meter_issues(plans: list[_PlanSpec], meters: MeterCatalog) -> list[ConfigIssue]:
    """Per-event terms price each event's value: only a SUM meter's events have one."""
    kinds = {meter.slug: meter.aggregation for meter in meters.meters}
    issues = []
    for p, plan in enumerate(plans):
        for v, version in enumerate(plan.versions):
            for slug, price in version.prices.items():
                model = _model(price)
                kind = kinds.get(slug)
                per_event = isinstance(model, PercentagePrice) and model.per_event
                if per_event and kind is not None and kind is not Aggregation.SUM:
                    issues.append(
                        ConfigIssue(
                            field_path("plans", p, "versions", v, "prices", slug, "model"),
                            f"per-event percentage terms need a SUM meter; {slug!r} is "
                            f"{kind.value}",
                            "price it on a meter that sums transaction amounts, or drop "
                            "the per-event terms",
                        )
                    )
    return issues


def _price_issues(plans: list[_PlanSpec]) -> Iterator[ConfigIssue]:
    """Tier bounds, minimum <= maximum, per-event terms, discounts; each at the key to change."""
    for p, plan in enumerate(plans):
        for v, version in enumerate(plan.versions):
            for slug, price in version.prices.items():
                where: tuple[int | str, ...] = ("plans", p, "versions", v, "prices", slug)
                if isinstance(price, _GraduatedSpec | _VolumeSpec):
                    yield from _tier_issues(where, price.tiers)
                if isinstance(price, _PercentageSpec):
                    yield from _per_event_issues(where, price)
                yield from _discount_issues(where, price)
                low, high = price.minimum, price.maximum
                if low is not None and high is not None and low > high:
                    yield ConfigIssue(
                        field_path(*where, "minimum"),
                        f"{_plain(low)} is more than maximum {_plain(high)}",
                        "lower minimum to at most maximum, or raise maximum",
                    )


def _per_event_issues(
    where: tuple[int | str, ...], price: _PercentageSpec
) -> Iterator[ConfigIssue]:
    low, high = price.min_fee_per_event, price.max_fee_per_event
    if low is not None and high is not None and low > high:
        yield ConfigIssue(
            field_path(*where, "min_fee_per_event"),
            f"{_plain(low)} is more than max_fee_per_event {_plain(high)}",
            "lower min_fee_per_event to at most max_fee_per_event",
        )
    model = _model(price)
    if not price.free_allowance or not isinstance(model, PercentagePrice):
        return
    # A percentage meter's units are the amount itself, so both keys free the same thing.
    if model.free_amount is not None:
        total = _plain(price.free_allowance + model.free_amount)
        yield ConfigIssue(
            field_path(*where, "free_allowance"),
            "free_allowance and free_amount would both make part of the amount free "
            "(counted twice)",
            f'write the whole free amount once, as free_amount: "{total}", and drop free_allowance',
        )
    elif model.per_event:
        yield ConfigIssue(
            field_path(*where, "free_allowance"),
            "a per-event percentage price takes its free amount as free_amount",
            f'write free_amount: "{_plain(price.free_allowance)}" instead',
        )


def _discount_issues(where: tuple[int | str, ...], price: _AnyPriceSpec) -> Iterator[ConfigIssue]:
    """A discount's places add to the per-unit prices': together at most 12 (exact amounts)."""
    if not price.discount_percent:
        return
    extra = _places(price.discount_percent) + 2
    unit_prices: list[tuple[str, Decimal, int]] = []
    match price:
        case _PerUnitSpec():
            unit_prices.append(("unit_price", price.unit_price, 0))
        case _GraduatedSpec() | _VolumeSpec():
            unit_prices += [
                (f"tiers[{i}].unit_price", tier.unit_price, 0) for i, tier in enumerate(price.tiers)
            ]
        case _PercentageSpec():
            unit_prices.append(("rate_percent", price.rate_percent, 2))
    for key, value, shift in unit_prices:
        if _places(value) + shift + extra > 12:
            yield ConfigIssue(
                field_path(*where, key),
                f"{_plain(value)} has too many decimal places for discount_percent "
                f"{_plain(price.discount_percent)} (the discounted amount would not be exact)",
                f"round {key} to at most {12 - extra - shift} decimal places, "
                "or use a discount with fewer",
            )


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _tier_issues(where: tuple[int | str, ...], tiers: list[_TierSpec]) -> Iterator[ConfigIssue]:
    """Bounds rise strictly from zero; only the last tier may be unbounded.

    A bounded last tier is accepted: usage beyond it is priced by that tier.
    """
    last = len(tiers) - 1
    below, below_text = Decimal(0), "zero"
    for index, tier in enumerate(tiers):
        field = field_path(*where, "tiers", index, "up_to")
        if tier.up_to is None:
            if index != last:
                yield ConfigIssue(
                    field,
                    "only the last tier may have no upper bound",
                    "give this tier an up_to, or move it to the end",
                )
            continue
        if tier.up_to <= below:
            fix = "write an up_to above zero" if index == 0 else "make up_to rise from tier to tier"
            yield ConfigIssue(field, f"{_plain(tier.up_to)} is not above {below_text}", fix)
        below, below_text = tier.up_to, f"tiers[{index}].up_to ({_plain(tier.up_to)})"


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
                fixed_fee=version.fixed_fee,
                minimum_commitment=version.minimum_commitment,
                quotas={
                    slug: Quota(q.soft_limit, q.hard_limit, tuple(sorted(set(q.thresholds))))
                    for slug, q in version.quotas.items()
                },
            )
            for version in versions
        ),
    )


def _price(spec: _AnyPriceSpec) -> MeterPrice:
    return MeterPrice(
        model=_model(spec),
        free_allowance=spec.free_allowance,
        maximum=spec.maximum,
        minimum=spec.minimum,
        discount_percent=spec.discount_percent,
    )


def _model(spec: _AnyPriceSpec) -> PriceModel:
    match spec:
        case _PerUnitSpec():
            return UnitPrice(spec.unit_price)
        case _PackageSpec():
            return PackagePrice(spec.package_size, spec.package_price, spec.round == "down")
        case _GraduatedSpec():
            return GraduatedPrice(_tiers(spec.tiers))
        case _VolumeSpec():
            return VolumePrice(_tiers(spec.tiers))
        case _PercentageSpec():
            return PercentagePrice(
                spec.rate_percent,
                fixed_fee=spec.fixed_fee_per_event,
                free_events=spec.free_events,
                free_amount=spec.free_amount,
                min_fee=spec.min_fee_per_event,
                max_fee=spec.max_fee_per_event,
            )


def _tiers(specs: list[_TierSpec]) -> tuple[Tier, ...]:
    return tuple(Tier(tier.up_to, tier.unit_price, tier.flat_price) for tier in specs)


def _plain(value: Decimal) -> str:
    """``value`` as a user would write it, without exponent notation (1E+6 is 1000000)."""
    return f"{value:f}"
