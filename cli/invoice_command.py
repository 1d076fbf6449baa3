"""``meterwax invoice``: a dry-run invoice of one tenant's billing period.

The invoice itself is ``reports.invoices``; this module reads the flags and
prints. Nothing is written: this shows what an invoice would say, it does not
issue one.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.estimate_command import run_report, table
from cli.options import add_source_options
from config.display import decimal_text as plain
from config.display import iso_utc as iso
from operators.estimates import Invoice, LineKind
from reports.invoices import build_invoice, invoice_json, invoice_note
from reports.usage import UsageReports, exact

_LABELS = {
    LineKind.USAGE: "usage",
    LineKind.MINIMUM: "minimum true-up",
    LineKind.FIXED_FEE: "fixed fee",
    LineKind.COMMITMENT: "commitment true-up",
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
    note = invoice_note(bill, now_ms)
    if note is not None:
        lines.append(note)
    return "\n".join(lines)
