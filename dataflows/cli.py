"""``meterwax`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.errors import ConfigError
from config.settings import load_settings
from dataflows import run_command

log = logging.getLogger("meterwax")


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="meter events from a file or the generator into ClickHouse",
        description="Run the metering flow. With no options: the bundled example events, "
        "catalogs and the embedded ClickHouse (chDB) under ./data.",
    )
    run.add_argument("--config", type=Path, help="YAML settings file (see README)")
    group = run.add_argument_group("input")
    group.add_argument("--input", dest="input.kind", choices=["file", "generator"])
    group.add_argument("--input-path", dest="input.path", help="JSONL file of CloudEvents")
    group.add_argument("--batch-size", dest="input.batch_size", type=int)
    group.add_argument("--events", dest="generator.events", type=int, help="generator: events")
    group.add_argument("--tenants", dest="generator.tenants", type=int, help="generator: tenants")
    group.add_argument("--seed", dest="generator.seed", type=int, help="generator: seed")
    group.add_argument(
        "--rate", dest="generator.rate", type=float, help="generator: events/s (0 = unlimited)"
    )
    group = run.add_argument_group("catalogs")
    group.add_argument("--meters", dest="catalogs.meters", help="meter catalog YAML")
    group.add_argument("--pricing", dest="catalogs.pricing", help="pricing catalog YAML")
    group = run.add_argument_group("windows")
    group.add_argument("--window", dest="window.size", help="window length, e.g. 1m, 1h")
    group.add_argument("--grace", dest="window.grace", help="grace period, e.g. 30s")
    group.add_argument("--idle-timeout", dest="window.idle_timeout", help="e.g. 10s")
    group.add_argument("--settlement-horizon", dest="window.settlement_horizon", help="e.g. 1h, 3d")
    group.add_argument("--dedup-horizon", dest="window.dedup_horizon", help="e.g. 1h")
    group = run.add_argument_group("output")
    group.add_argument("--dsn", dest="clickhouse.dsn", help="chdb://PATH or http(s)://...")
    group.add_argument("--database", dest="clickhouse.database")
    group = run.add_argument_group("engine")
    group.add_argument("--shards", dest="flow.shards", type=int)
    group.add_argument("--workers", dest="flow.workers", type=int, help="worker threads")
    run.add_argument("--print-config", action="store_true", help="print settings and exit")
    run.add_argument("--no-progress", action="store_true", help="no progress line")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags like ``window.grace`` become nested overrides; unset flags are left out."""
    nested: dict[str, Any] = {}
    for name, value in vars(args).items():
        if "." not in name or value is None:
            continue
        section, field = name.split(".", 1)
        nested.setdefault(section, {})[field] = value
    return nested


def build_parser() -> argparse.ArgumentParser:
    """The ``meterwax`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="meterwax", description="Usage metering and rating on Bytewax."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``meterwax`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(args.config, _overrides(args))
        if args.print_config:
            print(json.dumps(settings.masked(), indent=2))
            return 0
        return run_command.run(
            settings, progress=not args.no_progress and sys.stderr.isatty(), as_json=args.json
        )
    except ConfigError as exc:
        print(f"meterwax: configuration error:\n{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
