"""``meterwax webhooks list|redeliver|deliver``, and the dispatcher thread of ``run``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import redis
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from cli.options import settings_from
from cli.signals import stop_on_signals
from config.clock import SYSTEM_CLOCK, Clock
from config.errors import ConfigError
from config.redaction import redact_url
from config.settings import Settings
from dataflows.shutdown import StopRequest
from operators.webhooks import WebhookMessage
from sinks.clickhouse import DsnError, SinkError, connect, redact_dsn
from sinks.clickhouse_schema import migrate
from sinks.redis_client import redis_from_url
from sinks.webhook_dispatcher import Target, WebhookDispatcher
from sinks.webhook_log import Attempt, WebhookLog
from sinks.webhook_outbox import WebhookOutbox
from sinks.webhook_periods import announce_closed_periods

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``meterwax webhooks``."""
    parser = sub.add_parser(
        "webhooks",
        help="list, redeliver or deliver signed webhooks",
        description="Webhook deliveries: the log in ClickHouse and the queue in Redis.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="each delivery's latest state, newest first")
    listing.add_argument("--status", choices=["delivered", "retrying", "failed", "redeliver"])
    listing.add_argument("--endpoint")
    listing.add_argument("--tenant")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    again = actions.add_parser("redeliver", help="queue a logged delivery again (same id)")
    again.add_argument("msg_id", help="the webhook-id, e.g. msg_3f2a...")
    again.add_argument("--endpoint", help="only to this endpoint (default: every one logged)")
    deliver = actions.add_parser("deliver", help="deliver queued webhooks until stopped")
    deliver.add_argument(
        "--until-idle", action="store_true", help="stop when nothing is due (for cron and tests)"
    )
    for action in (listing, again, deliver):
        action.add_argument("--config", type=Path, help="YAML settings file, as for `run`")
        action.add_argument("--dsn", dest="clickhouse.dsn")
        action.add_argument("--database", dest="clickhouse.database")
        action.add_argument("--redis-url", dest="redis.url")


def targets(settings: Settings) -> list[Target]:
    """The configured endpoints with their secrets read (ConfigError if one cannot be)."""
    return [Target(e.name, e.url, e.secret_value()) for e in settings.webhooks.endpoints]


def dispatcher(settings: Settings, client: Client | None, clock: Clock) -> WebhookDispatcher:
    """A dispatcher on the configured Redis, logging to ``client`` (None: no log)."""
    r = settings.redis
    if r.url is None:
        raise ConfigError("webhooks need redis.url: the delivery queue is kept in Redis")
    redis = redis_from_url(r.url.get_secret_value(), r.password())
    w = settings.webhooks

    def watch(now_ms: int) -> object:
        return announce_closed_periods(
            redis, r.key_prefix, w.endpoints, w.period_closed_after, now_ms
        )

    database = settings.clickhouse.database
    return WebhookDispatcher(
        WebhookOutbox(redis, r.key_prefix),
        targets(settings),
        w,
        None if client is None else WebhookLog(client, database),
        clock=clock,
        watch=watch,
    )


@contextmanager
def dispatching(settings: Settings, client: Client | None, clock: Clock) -> Iterator[None]:
    """Deliver webhooks from a thread while the body runs (when configured to in ``run``)."""
    w = settings.webhooks
    if not w.endpoints or not w.dispatch_in_run or not settings.flow.is_primary:
        yield
        return
    worker = dispatcher(settings, client, clock)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="webhooks", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        # At most one attempt is in flight; it ends within the timeout.
        thread.join(timeout=w.timeout / 1000 + 5)


def _client(settings: Settings) -> Client:
    ch = settings.clickhouse
    try:
        client = connect(ch.dsn.get_secret_value(), ch.database)
        migrate(client, ch.database)
    except DsnError as exc:
        raise ConfigError(f"clickhouse.dsn: {exc}") from None
    return client


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _list(args: argparse.Namespace, settings: Settings) -> int:
    rows = WebhookLog(_client(settings), settings.clickhouse.database).latest(
        status=args.status, endpoint=args.endpoint, tenant=args.tenant, limit=args.limit
    )
    for a in rows:
        if args.json:
            print(
                json.dumps(
                    {
                        "msg_id": a.msg_id,
                        "endpoint": a.endpoint,
                        "type": a.type,
                        "tenant": a.tenant,
                        "status": a.status,
                        "attempts": a.attempt,
                        "http_status": a.http_status,
                        "error": a.error,
                        "last_attempt_ms": a.attempted_ms,
                        "next_attempt_ms": a.next_attempt_ms,
                    },
                    sort_keys=True,
                )
            )
        else:
            print(
                f"{a.msg_id}  {a.endpoint:<12} {a.type:<17} {a.tenant:<16} {a.status:<9} "
                f"attempts={a.attempt} http={a.http_status or '-'} last={_when(a.attempted_ms)} "
                f"next={_when(a.next_attempt_ms)} {a.error}".rstrip()
            )
    if not rows and not args.json:
        print("no deliveries logged")
    return 0


def _redeliver(args: argparse.Namespace, settings: Settings, clock: Clock) -> int:
    r = settings.redis
    if r.url is None:
        raise ConfigError("webhooks need redis.url: the delivery queue is kept in Redis")
    log_ = WebhookLog(_client(settings), settings.clickhouse.database)
    logged = log_.latest(msg_id=args.msg_id, endpoint=args.endpoint, limit=1000)
    configured = {e.name for e in settings.webhooks.endpoints}
    logged = [a for a in logged if a.endpoint in configured]
    if not logged:
        raise ConfigError(
            f"no delivery {args.msg_id!r} logged for a configured endpoint; "
            "see `meterwax webhooks list`"
        )
    outbox = WebhookOutbox(redis_from_url(r.url.get_secret_value(), r.password()), r.key_prefix)
    now_ms = clock.now_ms()
    queued: list[Attempt] = []
    waiting: list[Attempt] = []
    for a in logged:
        message = WebhookMessage(a.msg_id, a.type, a.tenant, now_ms, a.body)
        (queued if outbox.enqueue(message, [a.endpoint], now_ms) else waiting).append(a)
    log_.write(
        [
            Attempt(
                a.msg_id,
                a.endpoint,
                a.type,
                a.tenant,
                0,
                "redeliver",
                0,
                "",
                now_ms,
                now_ms,
                now_ms,
                a.body,
            )
            for a in queued
        ]
    )
    if queued:
        print(f"queued {args.msg_id} again for {', '.join(sorted(a.endpoint for a in queued))}")
    if waiting:
        # Still in the queue (being retried): queuing it again would change nothing.
        print(
            f"{args.msg_id} is still queued for {', '.join(sorted(a.endpoint for a in waiting))}; "
            "the dispatcher retries it (see `meterwax webhooks list`)"
        )
    return 0


def _deliver(args: argparse.Namespace, settings: Settings, clock: Clock) -> int:
    if not settings.webhooks.endpoints:
        raise ConfigError("webhooks.endpoints is empty: configure at least one endpoint")
    worker = dispatcher(settings, _client(settings), clock)
    if args.until_idle:
        while worker.run_once():
            pass
        worker.close()
        if not worker.leased:
            print(
                "meterwax webhooks: another dispatcher (a `meterwax run` or `webhooks "
                "deliver`) is delivering; nothing was sent from here",
                file=sys.stderr,
            )
            return 1
        return 0
    stop = StopRequest()
    event = threading.Event()
    with stop_on_signals(stop):
        thread = threading.Thread(target=worker.run, args=(event,), daemon=True)
        thread.start()
        while thread.is_alive() and not stop.requested:
            thread.join(timeout=0.5)
        event.set()
        thread.join()
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax webhooks ACTION``.

    0 on success, 2 on bad settings, 1 when Redis or ClickHouse cannot be reached
    or a ClickHouse query fails.
    """
    clock: Clock = getattr(args, "clock", SYSTEM_CLOCK)
    settings: Settings | None = None
    try:
        settings = settings_from(args)
        if args.action == "list":
            return _list(args, settings)
        if args.action == "redeliver":
            return _redeliver(args, settings, clock)
        return _deliver(args, settings, clock)
    except ConfigError as exc:
        print(f"meterwax webhooks: {exc}", file=sys.stderr)
        return 2
    except (SinkError, OSError) as exc:
        print(f"meterwax webhooks: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        # The queue is in Redis: nothing can be delivered or redelivered without it.
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"meterwax webhooks: cannot reach Redis: {redact_url(first)}", file=sys.stderr)
        return 1
    except ClickHouseError as exc:
        # The delivery log is in ClickHouse: list and redeliver read it.
        dsn = "" if settings is None else settings.clickhouse.dsn.get_secret_value()
        print(
            f"meterwax webhooks: ClickHouse query failed: {_first_line(exc, dsn)}", file=sys.stderr
        )
        return 1


def _first_line(exc: BaseException, dsn: str) -> str:
    """Error type, ClickHouse code and first message line, passwords masked."""
    code = getattr(exc, "code", None)
    label = type(exc).__name__ if code is None else f"{type(exc).__name__} code {code}"
    lines = str(exc).strip().splitlines()
    return redact_dsn(f"{label}: {lines[0]}" if lines else label, dsn)
