"""What the customer usage page shows: one tenant's period, limits, daily spend and invoices.

Built from the same reports as ``meterwax estimate`` and ``meterwax invoice``,
so the page's numbers are the API's.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from config.display import iso_utc as iso
from reports.invoices import build_invoice, invoice_json
from reports.usage import UsageReports, build_estimate, estimate_json, exact

# Past periods whose dry-run invoices are shown.
PAST_INVOICES = 3


def portal_data(reports: UsageReports, tenant: str, now_ms: int) -> dict[str, Any]:
    """The page's data for ``tenant`` at ``now_ms``; raises what build_estimate raises."""
    report = build_estimate(reports, tenant, None, now_ms)
    plan, (start_ms, end_ms) = reports.plan_and_period(tenant, None, now_ms)
    version = plan.version_at(min(now_ms, end_ms - 1))
    quotas = {} if version is None else version.quotas
    limits = {
        meter: {
            "soft_limit": None if q.soft_limit is None else exact(q.soft_limit),
            "hard_limit": None if q.hard_limit is None else exact(q.hard_limit),
            "thresholds_percent": [exact(t) for t in q.thresholds],
        }
        for meter, q in quotas.items()
    }
    invoices = []
    before_ms = start_ms
    for _ in range(PAST_INVOICES):
        # The period holding the instant just before the previous one began.
        bill = build_invoice(reports, tenant, iso(before_ms - 1), now_ms)
        invoices.append(invoice_json(bill, now_ms))
        before_ms = bill.period_start_ms
    return {
        "usage": estimate_json(report),
        "limits": limits,
        "daily_spend": _daily(reports, tenant, start_ms, end_ms),
        "invoices": invoices,
    }


def _daily(reports: UsageReports, tenant: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Cumulative spend of closed windows at the end of each day with usage."""
    per_day: dict[int, Decimal] = defaultdict(Decimal)
    for day, _, amount in reports.daily_spend(tenant, (start_ms, end_ms)):
        per_day[day] += amount
    running = Decimal(0)
    out = []
    for day in sorted(per_day):
        running += per_day[day]
        out.append({"day": iso(day), "cumulative": exact(running)})
    return out
