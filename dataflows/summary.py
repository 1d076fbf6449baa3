"""The end-of-run summary: this run's counts and the rated usage now in ClickHouse."""

from __future__ import annotations

from typing import Any

from dataflows.display import decimal_text
from dataflows.stats import RunStats
from sinks.clickhouse import UsageTotal


def summary_data(
    stats: RunStats,
    totals: list[UsageTotal],
    rejected_stored: dict[str, int],
    *,
    clustered: bool = False,
) -> dict[str, Any]:
    """The summary as plain data (for ``--json``); decimals as exact strings.

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
        "usage": [
            {
                "tenant": t.tenant,
                "meter": t.meter,
                "quantity": decimal_text(t.quantity, trim=True),
                "amount": decimal_text(t.amount, trim=True),
                "currency": t.currency,
            }
            for t in totals
        ],
        "rejected_stored": rejected_stored,
    }


def _reconcile_note(reconciles: bool | None) -> str:
    if reconciles is None:
        return "   (this process's share: sum over all processes)"
    return "" if reconciles else "   <-- DOES NOT RECONCILE"


def render_summary(data: dict[str, Any]) -> str:
    """The summary as an aligned text report."""
    run = data["run"]
    lines = [
        "meterwax run summary",
        f"  consumed {run['consumed']:,} = accepted {run['accepted']:,} "
        f"+ duplicates {run['duplicates']:,} + rejected {sum(run['rejected'].values()):,}"
        + _reconcile_note(run["reconciles"]),
        f"  of the duplicates, caught by Redis: {run['redis_duplicates']:,}",
        f"  late events accepted as adjustments: {run['late_accepted']:,}; "
        f"windows emitted: {run['windows']:,}; adjustment revisions: {run['adjustments']:,}",
    ]
    if run["rejected"]:
        lines.append("  rejected this run by reason:")
        lines += [f"    {reason:<20} {count:>10,}" for reason, count in run["rejected"].items()]
    lines.append("")
    lines.append("Rated usage in ClickHouse (latest revision of every window):")
    if not data["usage"]:
        lines.append("  (none)")
    else:
        header = f"  {'tenant':<18} {'meter':<14} {'quantity':>22} {'amount':>26} currency"
        lines.append(header)
        for row in data["usage"]:
            lines.append(
                f"  {row['tenant'][:18]:<18} {row['meter'][:14]:<14} {row['quantity']:>22} "
                f"{row['amount']:>26} {row['currency']}"
            )
    if data["rejected_stored"]:
        lines.append("")
        lines.append("Rejected events stored in ClickHouse, by reason:")
        lines += [
            f"  {reason:<20} {count:>10,}" for reason, count in data["rejected_stored"].items()
        ]
    return "\n".join(lines)
