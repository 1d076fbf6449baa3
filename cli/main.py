"""``meterwax`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from cli import (
    api_command,
    bench_command,
    estimate_command,
    invoice_command,
    produce_command,
    quote_command,
    reconcile_command,
    run_command,
    services_command,
    webhooks_command,
)
from cli.options import dotted_overrides
from config.clock import SYSTEM_CLOCK, Clock, ShiftedClock
from config.errors import ConfigError, error_report
from config.redaction import redact_url
from config.settings import load_settings
from dataflows.shutdown import forced_exit_code

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
    group.add_argument("--input", dest="input.kind", choices=["file", "generator", "kafka"])
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
    group = run.add_argument_group("kafka")
    group.add_argument("--brokers", dest="kafka.brokers", help="host:port[,host:port...]")
    group.add_argument("--topic", dest="kafka.topics", action="append", help="repeatable")
    group.add_argument(
        "--starting-offset", dest="kafka.starting_offset", choices=["earliest", "latest"]
    )
    group.add_argument(
        "--no-tail",
        dest="kafka.tail",
        action="store_const",
        const=False,
        help="stop at the end of the topics instead of waiting for more",
    )
    group.add_argument("--dead-letter-topic", dest="kafka.dead_letter_topic")
    group = run.add_argument_group("redis")
    group.add_argument("--redis-url", dest="redis.url", help="redis://[:password@]host:port/db")
    group.add_argument("--redis-ttl", dest="redis.ttl", help="idempotency key TTL, e.g. 35d")
    group = run.add_argument_group("recovery")
    group.add_argument("--recovery-dir", dest="recovery.directory", help="enables recovery")
    group.add_argument("--snapshot-interval", dest="recovery.snapshot_interval", help="e.g. 10s")
    group = run.add_argument_group("engine")
    group.add_argument("--shards", dest="flow.shards", type=int)
    group.add_argument(
        "--engine",
        dest="flow.engine",
        help="python (default) or native: parse, split and shard in the native core "
        "(no Redis or event log yet)",
    )
    group.add_argument("--workers", dest="flow.workers", type=int, help="worker threads")
    group.add_argument("--process-id", dest="flow.process_id", type=int, help="cluster: this id")
    group.add_argument(
        "--addresses",
        dest="flow.addresses",
        type=lambda text: text.split(","),
        help="cluster: host:port of every process, in process-id order, comma-separated",
    )
    group = run.add_argument_group("metrics")
    group.add_argument(
        "--metrics-port",
        dest="metrics.port",
        type=int,
        help="serve Prometheus /metrics on this port (+ process id)",
    )
    group = run.add_argument_group("api")
    group.add_argument(
        "--api-port",
        dest="api.port",
        type=int,
        help="serve the HTTP API from this run (reads while the run holds chDB; ingest with Kafka)",
    )
    group.add_argument("--api-host", dest="api.host", help="address the API listens on")
    group.add_argument("--api-keys-file", dest="api.keys_file", help="the API's keys file")
    run.add_argument("--print-config", action="store_true", help="print settings and exit")
    run.add_argument("--no-progress", action="store_true", help="no progress line")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")


def _shifted_clock(text: str) -> Clock:
    try:
        return ShiftedClock(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of milliseconds, e.g. -94608000000"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``meterwax`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="meterwax", description="Usage metering and rating on Bytewax."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # Test-only, hidden: moves "now" for every command, so subprocess tests need
    # not depend on today's date (in-process callers pass a clock to main()).
    parser.add_argument(
        "--test-clock-offset-ms", dest="clock", type=_shifted_clock, help=argparse.SUPPRESS
    )
    parser.set_defaults(clock=SYSTEM_CLOCK)
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    services_command.add_parser(sub)
    produce_command.add_parser(sub)
    reconcile_command.add_parser(sub)
    quote_command.add_parser(sub)
    estimate_command.add_parser(sub)
    invoice_command.add_parser(sub)
    api_command.add_parser(sub)
    bench_command.add_parser(sub)
    webhooks_command.add_parser(sub)
    return parser


# Subcommands other than `run`, each with its own `main(args) -> exit code`.
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "services": services_command.main,
    "produce": produce_command.main,
    "reconcile": reconcile_command.main,
    "quote": quote_command.main,
    "estimate": estimate_command.main,
    "invoice": invoice_command.main,
    "api": api_command.main,
    "bench": bench_command.main,
    "webhooks": webhooks_command.main,
}


def main(argv: Sequence[str] | None = None, *, clock: Clock | None = None) -> int:
    """Entry point of the ``meterwax`` console script; ``clock`` replaces the wall clock."""
    args = build_parser().parse_args(argv)
    if clock is not None:
        args.clock = clock
    if not args.verbose:
        # The engine reports a failing step as a panic with a long native stack
        # trace; meterwax prints what went wrong itself (-v keeps the trace).
        os.environ["RUST_BACKTRACE"] = "0"
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)
    try:
        return _command(args)
    except Exception:
        # A bug, not a mistake in the input: the traceback helps, the secrets must not show.
        print(redact_url(traceback.format_exc()), end="", file=sys.stderr)
        return 1


def _redact_record(record: logging.LogRecord) -> bool:
    """Mask secrets in a log record (a library may log a URL or echo a setting)."""
    record.msg, record.args = redact_url(record.getMessage()), None
    return True


def _command(args: argparse.Namespace) -> int:
    command = _COMMANDS.get(args.command)
    if command is not None:
        return command(args)
    try:
        settings = load_settings(args.config, dotted_overrides(args))
        if args.print_config:
            print(json.dumps(settings.masked(), indent=2))
            return 0
        return run_command.run(
            settings,
            progress=not args.no_progress and sys.stderr.isatty(),
            as_json=args.json,
            clock=args.clock,
        )
    except ConfigError as exc:
        print(error_report("meterwax: configuration error", exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C before the flow runs (it handles the signal itself while it runs).
        print("meterwax: interrupted", file=sys.stderr)
        return forced_exit_code(signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
