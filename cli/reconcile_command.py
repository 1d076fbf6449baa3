"""``meterwax reconcile``: usage recomputed from the event log against the rated windows."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.options import settings_from
from config.errors import ConfigError
from operators.reconcile import Difference
from operators.timeparse import TimeFormatError, parse_rfc3339_ms
from reports.reconciliation import check
from sinks.clickhouse import SinkError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``meterwax reconcile``."""
    parser = sub.add_parser(
        "reconcile",
        help="recompute usage from stored events and compare it with the rated windows",
        description="Exits 0 when every window in the range agrees, 1 on any difference.",
    )
    parser.add_argument(
        "--from", dest="start", required=True, help="RFC 3339, e.g. 2026-11-01T00:00:00Z"
    )
    parser.add_argument("--to", dest="end", required=True, help="RFC 3339 (exclusive)")
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--config", type=Path, help="YAML settings file, as for `run`")
    parser.add_argument("--dsn", dest="clickhouse.dsn")
    parser.add_argument("--database", dest="clickhouse.database")
    parser.add_argument("--meters", dest="catalogs.meters")
    parser.add_argument("--pricing", dest="catalogs.pricing")
    parser.add_argument("--window", dest="window.size", help="the window length the flow used")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _time(flag: str, text: str) -> int:
    try:
        return parse_rfc3339_ms(text)
    except TimeFormatError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _render(compared: int, found: list[Difference]) -> str:
    if not found:
        return f"reconciled: {compared} windows, no differences"
    lines = [f"{len(found)} differences in {compared} windows:"]
    for d in found:
        where = " ".join(str(part) for part in d.key)
        lines.append(f"  {d.problem.value:<15} {where}: events say {d.expected}, rated {d.rated}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax reconcile``: 0 when all windows agree.

    1 on differences or when ClickHouse cannot be reached, 2 on bad input.
    """
    try:
        settings = settings_from(args)
        start, end = _time("--from", args.start), _time("--to", args.end)
        if end <= start:
            raise ConfigError("--to must be later than --from")
        compared, found = check(settings, start, end, args.tenant)
    except ConfigError as exc:
        print(f"meterwax reconcile: {exc}", file=sys.stderr)
        return 2
    except SinkError as exc:
        print(f"meterwax reconcile: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "windows": compared,
                    "differences": [
                        {
                            "problem": d.problem.value,
                            **d.key._asdict(),
                            "expected": None if d.expected is None else str(d.expected),
                            "rated": None if d.rated is None else str(d.rated),
                        }
                        for d in found
                    ],
                },
                indent=2,
            )
        )
    else:
        print(_render(compared, found))
    return 1 if found else 0
