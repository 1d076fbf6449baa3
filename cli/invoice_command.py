"""``meterwax invoice``: a dry-run invoice of one tenant's billing period.

Usage lines come from the rated windows in ClickHouse; minimums, the fixed fee
and the minimum commitment from the pricing catalog. Lines are rounded
half-even to the currency's minor unit and the total is their sum (see
``operators.estimates``). Nothing is written: this shows what an invoice would
say, it does not issue one.
"""

from __future__ import annotations

import argparse
from typing import Any

from dataflows.estimate_command import (
    UsageReports,
    add_source_options,
    exact,
    iso,
    plain,
    run_report,
    table,
)
from operators.estimates import Invoice, LineKind, invoice
from operators.pricing import minor_units

_LABELS = {
    LineKind.USAGE: "usage",
    LineKind.MINIMUM: "minimum true-up",
    LineKind.FIXED_FEE: "fixed fee",
    LineKind.COMMITMENT: "commitment true-up",
}


def build_invoice(reports: UsageReports, tenant: str, period: str, now_ms: int) -> Invoice:
    """The dry-run invoice of the tenant's period named by ``period`` (YYYY-MM or an instant)."""
    plan, bounds = reports.plan_and_period(tenant, period, now_ms)
    return invoice(
        tenant,
        plan,
        bounds,
        usage=reports.closed_usage(tenant, bounds),
        aggregations=reports.aggregations,
    )


def invoice_json(bill: Invoice, now_ms: int) -> dict[str, Any]:
    """The invoice as JSON-ready data: exact amounts and rounded ones as decimal strings.

    ``open`` is true while the period has not ended at ``now_ms`` (more usage may come).
    """
    return {
        "tenant": bill.tenant,
        "plan": bill.plan_id,
        "currency": bill.currency,
        "minor_units": minor_units(bill.currency),
        "period": {"start": iso(bill.period_start_ms), "end": iso(bill.period_end_ms)},
        "price_version": bill.price_version,
        "open": now_ms < bill.period_end_ms,
        "dry_run": True,
        "lines": [
            {
                "kind": line.kind.value,
                "meter": line.meter,
                "plan": line.plan_id,
                "price_version": line.price_version,
                "quantity": None if line.quantity is None else exact(line.quantity),
                "amount": exact(line.amount),
                "amount_rounded": plain(line.rounded),
            }
            for line in bill.lines
        ],
        "total": plain(bill.total),
    }


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``meterwax invoice``."""
    parser = sub.add_parser(
        "invoice",
        help="a dry-run invoice of a tenant's billing period (writes nothing)",
        description="Line items per meter and price version from the rated windows, the "
        "meters' minimum true-ups, the fixed fee and the minimum-commitment true-up; each "
        "line rounded half-even to the currency's minor unit, the total their sum.",
    )
    parser.add_argument("--tenant", required=True, help="the tenant (CloudEvents subject)")
    parser.add_argument(
        "--period",
        required=True,
        help="YYYY-MM (the period starting that month) or an RFC 3339 instant inside it",
    )
    add_source_options(parser, live=False)
    parser.add_argument("--json", action="store_true", help="print the invoice as JSON")


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax invoice``: 0 printed, 1 if ClickHouse cannot be read, 2 on bad input."""

    def report(reports: UsageReports, now_ms: int) -> tuple[dict[str, Any], str]:
        bill = build_invoice(reports, args.tenant, args.period, now_ms)
        return invoice_json(bill, now_ms), _render(bill, now_ms)

    return run_report("invoice", args, report)


def _render(bill: Invoice, now_ms: int) -> str:
    version = "no plan version" if bill.price_version is None else f"version {bill.price_version}"
    status = " (open: the period has not ended)" if now_ms < bill.period_end_ms else ""
    rows = [["line", "meter", "version", "quantity", "amount", "currency"]]
    rows += [
        [
            _LABELS[line.kind],
            line.meter or "",
            line.price_version,
            "" if line.quantity is None else exact(line.quantity),
            plain(line.rounded),
            bill.currency,
        ]
        for line in bill.lines
    ]
    rows.append(["total", "", "", "", plain(bill.total), bill.currency])
    lines = [
        f"invoice (dry run) for {bill.tenant}, plan {bill.plan_id} {version} ({bill.currency})",
        f"period {iso(bill.period_start_ms)} to {iso(bill.period_end_ms)}{status}",
        *table(rows, "<<<>><"),
    ]
    if not bill.lines:
        lines.append("  (no lines)")
    return "\n".join(lines)
