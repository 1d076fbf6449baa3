"""Dry-run invoices of a tenant's billing period.

Usage lines come from the rated windows in ClickHouse, except for per-event
percentage prices, which are priced exactly from the period's events in the
event log (the streamed window amounts are provisional); minimums, the fixed
fee and the minimum commitment from the pricing catalog. Lines are rounded
half-even to the currency's minor unit and the total is their sum (see
``operators.estimates``). Nothing is written: this shows what an invoice would
say, it does not issue one.
"""

from __future__ import annotations

from typing import Any

from config.display import decimal_text as plain
from config.display import iso_utc as iso
from operators.estimates import Invoice, PricedFrom, invoice
from operators.pricing import minor_units
from reports.usage import UsageReports, exact


def build_invoice(reports: UsageReports, tenant: str, period: str, now_ms: int) -> Invoice:
    """The dry-run invoice of the tenant's period named by ``period`` (YYYY-MM or an instant)."""
    plan, bounds = reports.plan_and_period(tenant, period, now_ms)
    return invoice(
        tenant,
        plan,
        bounds,
        usage=reports.closed_usage(tenant, bounds),
        aggregations=reports.aggregations,
        events=reports.per_event_usage(tenant, plan, bounds),
    )


def invoice_json(bill: Invoice, now_ms: int) -> dict[str, Any]:
    """The invoice as JSON-ready data: exact amounts and rounded ones as decimal strings.

    ``open`` is true while the period has not ended at ``now_ms`` (more usage may come).
    Each line says where it is ``priced_from``; an open invoice with lines of
    both sources says what each counts.
    """
    data: dict[str, Any] = {
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
                "priced_from": line.priced_from.value,
            }
            for line in bill.lines
        ],
        "total": plain(bill.total),
    }
    note = invoice_note(bill, now_ms)
    if note is not None:
        data["note"] = note
    return data


def invoice_note(bill: Invoice, now_ms: int) -> str | None:
    """For an open period with lines priced from events: what windows and events count."""
    sources = {line.priced_from for line in bill.lines}
    if now_ms >= bill.period_end_ms or PricedFrom.EVENTS not in sources:
        return None
    return (
        "open period: lines priced from windows count the windows closed so far; lines "
        "priced from events count every event accepted so far (quantity and amount alike)"
    )
