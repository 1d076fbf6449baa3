"""``meterwax estimate``: a tenant's spend in a billing period so far, and its projection.

The report itself is ``reports.usage``; this module reads the flags and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cli.options import add_source_options, settings_from
from config.display import iso_utc as iso
from config.errors import ConfigError, error_report
from operators.estimates import CurrencyMismatchError, Estimate, LiveState, PeriodError
from reports.usage import (
    SourceUnavailable,
    UnknownTenantError,
    UsageReports,
    build_estimate,
    estimate_json,
    estimate_note,
    exact,
)
from sinks.redis_live_usage import LiveUsageError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``meterwax estimate``."""
    parser = sub.add_parser(
        "estimate",
        help="a tenant's spend in a billing period so far, and its projection",
        description="Per meter: usage, the amount of closed windows (final), what the live "
        "counters add (provisional), their total and a linear projection to the end of the "
        "period. Amounts at full precision, before minimums, fixed fee and commitment. "
        "Reads only.",
    )
    parser.add_argument("--tenant", required=True, help="the tenant (CloudEvents subject)")
    parser.add_argument(
        "--period",
        help="YYYY-MM (the period starting that month) or an RFC 3339 instant inside it; "
        "default now",
    )
    add_source_options(parser)
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax estimate``: 0 printed, 1 if a store cannot be read, 2 on bad input."""
    return run_report(
        "estimate",
        args,
        lambda reports, now_ms: _output(build_estimate(reports, args.tenant, args.period, now_ms)),
    )


def run_report(
    name: str,
    args: argparse.Namespace,
    report: Callable[[UsageReports, int], tuple[dict[str, Any], str]],
) -> int:
    """Open the stores, run ``report(reports, now_ms) -> (json data, text)`` and print it.

    Shared by ``estimate`` and ``invoice``: the same errors, exit codes and output.
    """
    prefix = f"meterwax {name}"
    try:
        reports = UsageReports.from_settings(settings_from(args))
    except ConfigError as exc:
        print(error_report(f"{prefix}: configuration error", exc), file=sys.stderr)
        return 2
    except SourceUnavailable as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    try:
        data, text = report(reports, args.clock.now_ms())
    except PeriodError as exc:
        print(f"{prefix}: --period: {exc}", file=sys.stderr)
        return 2
    except UnknownTenantError as exc:
        print(f"{prefix}: --tenant: {exc}", file=sys.stderr)
        return 2
    except (SourceUnavailable, CurrencyMismatchError, LiveUsageError) as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    finally:
        reports.close()
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _output(report: Estimate) -> tuple[dict[str, Any], str]:
    return estimate_json(report), _render(report)


def _render(report: Estimate) -> str:
    percent = (report.elapsed_fraction * 100).quantize(Decimal("0.1"))
    rows = [["meter", "usage", "final", "provisional", "total", "projection", "currency"]]
    rows += [
        [
            m.meter,
            "-" if m.quantity is None else exact(m.quantity),
            exact(m.final),
            exact(m.provisional),
            exact(m.total),
            exact(m.projection),
            m.currency,
        ]
        for m in report.meters
    ]
    rows.append(
        ["all meters", "", "", "", exact(report.total), exact(report.projection), report.currency]
    )
    lines = [
        f"estimate for {report.tenant}, plan {report.plan_id} ({report.currency}), period "
        f"{iso(report.period_start_ms)} to {iso(report.period_end_ms)}, {percent}% elapsed",
        *table(rows, "<>>>>><"),
    ]
    if not report.meters:
        lines.append("  (no usage in this period)")
    lagging = [m.meter for m in report.meters if m.live is LiveState.LAGGING]
    if lagging:
        lines.append(
            f"live counters behind the closed windows for {', '.join(lagging)}: "
            "provisional shown as 0 until they catch up"
        )
    lines.append(estimate_note(report))
    return "\n".join(lines)


def table(rows: list[list[str]], align: str) -> list[str]:
    """Rows as indented text columns; ``align`` has one ``<`` (left) or ``>`` per column."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(align))]
    return [
        "  "
        + "  ".join(
            f"{cell:{side}{width}}" for cell, side, width in zip(row, align, widths, strict=True)
        ).rstrip()
        for row in rows
    ]
