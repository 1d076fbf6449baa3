"""``meterwax quote``: what a plan charges for one meter's usage over a billing period.

The quote itself is ``reports.quotes``; this module reads the flags and prints.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import assert_never

from config.display import decimal_text as _plain
from config.display import iso_utc as _iso
from config.errors import ConfigError
from config.pricing import (
    GraduatedPrice,
    PackagePrice,
    PercentagePrice,
    PriceModel,
    Tier,
    UnitPrice,
    VolumePrice,
)
from config.pricing_catalog import EXAMPLE_PRICING_CATALOG
from operators.limits import MAX_FRACTION_DIGITS, MAX_VALUE
from operators.pricing import minor_units
from operators.timeparse import TimeFormatError, parse_rfc3339_ms
from reports.quotes import Quote, QuoteError, build_quote, quote_json

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``meterwax quote``."""
    parser = sub.add_parser(
        "quote",
        help="price one meter's usage over a billing period with a plan",
        description="Prints the period amount for --quantity units of --meter under the "
        "plan version in force at --at: at full precision and rounded (half-even) to the "
        "currency's minor unit, then the invoice a period with only this usage would get "
        "(the meter's minimum, the fixed fee and the minimum commitment included). The plan "
        "is --plan, the plan of --tenant, or the catalog's default_plan.",
    )
    parser.add_argument(
        "--catalog",
        type=Path,
        default=EXAMPLE_PRICING_CATALOG,
        help="pricing catalog YAML (default: the bundled example)",
    )
    parser.add_argument(
        "--meters", type=Path, help="meter catalog YAML: check the slugs against it"
    )
    parser.add_argument("--plan", help="plan id (default: the plan of --tenant, or default_plan)")
    parser.add_argument("--tenant", help="quote with this tenant's plan (subscription or default)")
    parser.add_argument("--meter", required=True, help="meter slug")
    parser.add_argument("--quantity", required=True, help="usage in the period, e.g. 1500000")
    parser.add_argument(
        "--at",
        help="when: RFC 3339 with an offset, or YYYY-MM-DD (00:00 UTC); default: when the "
        "plan's newest version took effect (the same quote whenever it is run)",
    )
    parser.add_argument("--json", action="store_true", help="print the quote as JSON")


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax quote``: 0 with the quote printed, 2 on bad input."""
    try:
        quote = build_quote(
            args.catalog,
            args.meter,
            _quantity(args.quantity),
            plan_id=args.plan,
            tenant=args.tenant,
            at_ms=_at_ms(args.at),
            meters=args.meters,
        )
    except ConfigError as exc:
        print(f"meterwax quote: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except QuoteError as exc:
        print(f"meterwax quote: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(quote_json(quote), indent=2) if args.json else _render(quote))
    return 0


def _quantity(text: str) -> Decimal:
    fix = "write the period's usage as a decimal, e.g. 1500000 or 12.5"
    try:
        quantity = Decimal(text)
    except InvalidOperation:
        raise QuoteError(f"--quantity: {text!r} is not a number; {fix}") from None
    if not quantity.is_finite():
        raise QuoteError(f"--quantity: {text!r} is not a finite number; {fix}")
    if quantity < 0:
        raise QuoteError(f"--quantity: {text!r} is negative; write zero or more")
    if quantity >= MAX_VALUE:
        raise QuoteError(f"--quantity: {text!r} is 10^18 or more; write a smaller quantity")
    exponent = quantity.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_FRACTION_DIGITS:
        raise QuoteError(
            f"--quantity: {text!r} has more than {MAX_FRACTION_DIGITS} decimal places; round it"
        )
    # "-0" passes the sign check; without its sign it cannot print a "-0" amount.
    return quantity.copy_abs()


def _at_ms(text: str | None) -> int | None:
    if text is None:
        return None
    if _DATE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError as exc:
            raise QuoteError(f"--at: {text!r} is not a real date ({exc})") from None
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return (midnight - _EPOCH) // timedelta(milliseconds=1)
    try:
        return parse_rfc3339_ms(text)
    except TimeFormatError as exc:
        raise QuoteError(f"--at: {exc}; or write a date such as 2026-11-01 (00:00 UTC)") from None


def _render(quote: Quote) -> str:
    currency = quote.plan.currency
    price = quote.price
    version = quote.version
    at = f"at {_iso(quote.at_ms)}"
    if quote.at_default:
        at += " (no --at: when the newest version took effect)"
    lines = [
        f"plan {quote.plan.id} ({currency}, {quote.plan_from}), version {version.version} "
        f"(from {_iso(version.effective_from_ms)}), {at}",
        f"meter {quote.meter}: {_describe(price.model)}",
        *(f"  {line}" for line in _tier_lines(price.model)),
        *(f"  {line}" for line in _percentage_lines(price.model)),
        f"  free allowance  {_plain(price.free_allowance)} units per period",
        f"  cap             {'none' if price.maximum is None else _plain(price.maximum)}",
    ]
    if price.discount_percent:
        lines.append(f"  discount        {_plain(price.discount_percent)}%")
    if price.minimum is not None:
        lines.append(f"  minimum         {_plain(price.minimum)} (applied on the invoice)")
    lines += [
        f"quantity          {_plain(quote.quantity)}",
        f"amount            {_plain(quote.amount)} {currency}",
        f"rounded           {_plain(quote.rounded)} {currency}"
        f" ({minor_units(currency)} decimal places, half-even)",
    ]
    if quote.zero_usage_fee:
        lines.append(
            f"  zero usage costs {_plain(quote.zero_usage_fee)} {currency}: the first tier's "
            "flat price is due even without usage (as Lago and OpenMeter charge it)"
        )
    if quote.per_event:
        lines.append(
            "  per-event terms: the quantity is priced as one event; invoices price each "
            "event of the period in (time, idempotency key) order"
        )
    lines.append("invoice of a period with only this usage:")
    for line in quote.lines:
        label = line.kind.value.replace("_", " ")
        lines.append(f"  {label:<20}{line.meter or '':<16}{_plain(line.rounded):>14} {currency}")
    lines.append(f"  {'total':<36}{_plain(quote.total):>14} {currency}")
    return "\n".join(lines)


def _describe(model: PriceModel) -> str:
    match model:
        case UnitPrice(unit_price=unit_price):
            return f"per_unit, {_plain(unit_price)} per unit"
        case PackagePrice(package_size=size, package_price=package_price, round_down=down):
            kind = "complete package" if down else "started package"
            rounding = "down" if down else "up"
            return (
                f"package, {_plain(package_price)} per {kind} of {_plain(size)} units "
                f"(round: {rounding})"
            )
        case GraduatedPrice():
            return "graduated, each tier prices the units that fall in it"
        case VolumePrice():
            return "volume, the tier the total falls in prices every unit"
        case PercentagePrice(rate_percent=rate):
            return f"percentage, {_plain(rate)}% of the quantity"
        case _:
            assert_never(model)


def _percentage_lines(model: PriceModel) -> list[str]:
    """The percentage terms beside the rate, as the catalog sets them."""
    if not isinstance(model, PercentagePrice):
        return []
    lines = []
    if model.fixed_fee:
        lines.append(f"fixed fee       {_plain(model.fixed_fee)} per event")
    events, amount = model.free_events, model.free_amount
    if events is not None and amount is not None:
        covers = f"the first {events} events, while {_plain(amount)} of the amount covers them"
        lines.append(f"free units      {covers}")
    elif events is not None:
        lines.append(f"free units      the first {events} events")
    elif amount is not None:
        lines.append(f"free units      the first {_plain(amount)} of the amount")
    bounds = [
        *([] if model.min_fee is None else [f"at least {_plain(model.min_fee)}"]),
        *([] if model.max_fee is None else [f"at most {_plain(model.max_fee)}"]),
    ]
    if bounds:
        lines.append(f"per event       {', '.join(bounds)}")
    return lines


def _tier_lines(model: PriceModel) -> list[str]:
    if not isinstance(model, GraduatedPrice | VolumePrice):
        return []
    previous = (None, *model.tiers[:-1])
    return [_tier_line(tier, before) for tier, before in zip(model.tiers, previous, strict=True)]


def _tier_line(tier: Tier, before: Tier | None) -> str:
    if tier.up_to is not None:
        span = f"up to {_plain(tier.up_to)}"
    elif before is not None and before.up_to is not None:
        span = f"above {_plain(before.up_to)}"
    else:
        span = "all units"
    flat = f" + {_plain(tier.flat_price)} flat" if tier.flat_price else ""
    return f"{span:<22}{_plain(tier.unit_price)} per unit{flat}"
