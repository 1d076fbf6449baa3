"""The end-of-run summary: this run's counts, the billing periods it rated, and what
ClickHouse now holds (older runs included)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from config.display import decimal_text, iso_utc, printable
from dataflows.stats import RunStats
from operators.period_usage import PeriodUsage
from operators.pricing import round_to_minor
from sinks.clickhouse import UsageTotal

_THIS_RUN = "Billing periods this run rated (usage as each meter aggregates it over the period):"
_STORED = "Billing periods in ClickHouse, older runs included (every window's latest revision):"
_ROUNDING_NOTE = (
    "  amounts are rounded half-even to the currency's minor unit, as the invoice rounds "
    "each line (--json has them exact too)"
)
_NA_NOTE = (
    "  n/a: windows stored before distinct values were kept cannot tell a period's "
    "UNIQUE_COUNT; `meterwax estimate` reads it from the live counters"
)


def summary_data(
    stats: RunStats,
    totals: list[UsageTotal],
    rejected_stored: dict[str, int],
    stored_periods: list[PeriodUsage],
    *,
    clustered: bool = False,
) -> dict[str, Any]:
    """The summary as plain data (for ``--json``); decimals as exact strings.

    The row lists (``usage`` and the billing periods) are iterators, built as
    they are written: with 100k tenants their dicts would take ~0.5 GiB at once.

    ``usage`` sums the latest revision of every stored window per tenant and
    meter (the period's usage for SUM and COUNT meters only); ``billing_periods``
    has one row per invoice usage line: ``this_run`` as this run's flow priced
    it, ``stored`` from every window in ClickHouse.

    In a cluster the counts are this process's share; ``reconciles`` is then
    None, as only the sum over all processes reconciles.
    """
    return {
        "run": {
            "consumed": stats.consumed,
            "accepted": stats.accepted,
            "duplicates": stats.duplicates,
            "redis_duplicates": stats.redis_duplicates,
            "late_accepted": stats.late,
            "rejected": dict(sorted(stats.rejected.items())),
            "windows": stats.windows,
            "adjustments": stats.adjustments,
            "reconciles": None if clustered else stats.reconciles,
        },
        "billing_periods": {
            "this_run": map(_period_row, stats.rated_periods()),
            "stored": map(_period_row, stored_periods),
        },
        "usage": map(_usage_row, totals),
        "rejected_stored": rejected_stored,
    }


def _usage_row(t: UsageTotal) -> dict[str, Any]:
    return {
        "tenant": t.tenant,
        "meter": t.meter,
        "quantity": decimal_text(t.quantity, trim=True),
        "amount": decimal_text(t.amount, trim=True),
        "currency": t.currency,
    }


def write_json(data: Any, out: TextIO, depth: int = 0) -> None:
    """``data`` as JSON, iterators written item by item as they are built; what a
    list holds goes on one line each (for a row list: one row per line).

    Keys are text, as everywhere in the summary. Iterators are consumed: the
    summary's data is written once.
    """
    pad = "\n" + "  " * (depth + 1)
    if isinstance(data, dict):
        out.write("{")
        for i, (key, value) in enumerate(data.items()):
            if not isinstance(key, str):
                raise TypeError(f"summary keys are text, not {key!r}")
            out.write(("," if i else "") + pad + json.dumps(key) + ": ")
            write_json(value, out, depth + 1)
        out.write("\n" + "  " * depth + "}" if data else "}")
    elif isinstance(data, list | tuple | Iterator):
        out.write("[")
        empty = True
        for item in data:
            out.write(("" if empty else ",") + pad + json.dumps(item))
            empty = False
        out.write("]" if empty else "\n" + "  " * depth + "]")
    else:
        out.write(json.dumps(data))


def _period_row(p: PeriodUsage) -> dict[str, Any]:
    return {
        "tenant": p.tenant,
        "meter": p.meter,
        "period_start": None if p.period_start_ms is None else iso_utc(p.period_start_ms),
        "plan_id": p.plan_id,
        "price_version": p.price_version,
        "quantity": None if p.quantity is None else decimal_text(p.quantity, trim=True),
        "amount": decimal_text(p.amount, trim=True),
        "amount_rounded": decimal_text(round_to_minor(p.amount, p.currency)),
        "currency": p.currency,
    }


def _reconcile_note(reconciles: bool | None) -> str:
    if reconciles is None:
        return "   (this process's share: sum over all processes)"
    return "" if reconciles else "   <-- DOES NOT RECONCILE"


def _period_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    lines = [
        f"  {'tenant':<18} {'meter':<14} {'period start':<20} {'version':<10} "
        f"{'quantity':>20} {'amount (rounded)':>18} currency"
    ]
    for row in rows:
        quantity = "n/a" if row["quantity"] is None else row["quantity"]
        lines.append(
            f"  {printable(row['tenant'])[:18]:<18} {printable(row['meter'])[:14]:<14} "
            f"{row['period_start'] or 'unknown':<20} {printable(row['price_version'])[:10]:<10} "
            f"{quantity:>20} {row['amount_rounded']:>18} {printable(row['currency'])}"
        )
    return lines


def render_summary(data: dict[str, Any]) -> str:
    """The summary as an aligned text report; text from events is escaped."""
    run = data["run"]
    lines = [
        "meterwax run summary",
        f"  consumed {run['consumed']:,} = accepted {run['accepted']:,} "
        f"+ duplicates {run['duplicates']:,} + rejected {sum(run['rejected'].values()):,}"
        + _reconcile_note(run["reconciles"]),
        f"  of the duplicates, caught by Redis: {run['redis_duplicates']:,}",
        # Late is judged by the event's own partition: its window may still have been
        # open (no adjustment) when other partitions lagged.
        f"  of the accepted, late (past their window's grace): {run['late_accepted']:,}; "
        f"windows emitted: {run['windows']:,}; adjustment revisions: {run['adjustments']:,}",
    ]
    if run["rejected"]:
        lines.append("  rejected this run by reason:")
        lines += [f"    {reason:<20} {count:>10,}" for reason, count in run["rejected"].items()]
    periods = data["billing_periods"]
    stored = list(periods["stored"])
    lines.append("")
    lines.append(_THIS_RUN)
    lines += _period_table(list(periods["this_run"]))
    lines.append("")
    lines.append(_STORED)
    lines += _period_table(stored)
    lines.append(_ROUNDING_NOTE)
    if any(row["quantity"] is None for row in stored):
        lines.append(_NA_NOTE)
    if data["rejected_stored"]:
        lines.append("")
        lines.append("Rejected events stored in ClickHouse, by reason:")
        lines += [
            f"  {printable(reason):<20} {count:>10,}"
            for reason, count in data["rejected_stored"].items()
        ]
    return "\n".join(lines)
