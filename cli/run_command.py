"""``meterwax run``: build everything from settings, run the flow, print the summary."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from datetime import timedelta
from importlib.metadata import version
from typing import NoReturn, cast

from bytewax._bytewax import cli_main
from bytewax.inputs import Source
from bytewax.recovery import RecoveryConfig, init_db_dir
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END
from confluent_kafka.admin import AdminClient

from api.embedded import EmbeddedApi
from cli.gc_tuning import release_freed_memory, tune_gc
from cli.progress import Progress
from cli.signals import report_stop, stop_on_signals
from cli.summary import render_summary, summary_data, write_json
from cli.webhooks_command import dispatching, targets
from config.clock import SYSTEM_CLOCK, Clock
from config.display import iso_utc
from config.durations import format_duration_ms
from config.errors import ConfigError
from config.meter_catalog import load_meter_catalog
from config.pricing import PricingCatalog
from config.pricing_catalog import load_pricing_catalog
from config.redaction import redact_url
from config.settings import Settings
from dataflows.flow import FlowSpec, build_flow
from dataflows.kafka_source import KafkaBatchSource
from dataflows.lease import LOST, REFUSED, LeaseKeeper, LeaseRefused, output_lease
from dataflows.metrics import METRICS, Metrics, serve
from dataflows.outputs import EventLogSink, LiveUsageSink, RatedWindowSink, RejectionSink
from dataflows.preflight import check_input
from dataflows.shutdown import StopRequest
from dataflows.sources import Batch, JsonlFileSource, SyntheticSource
from dataflows.stats import RunStats
from operators.idempotency import IdempotencyStore
from operators.period_usage import stored_periods
from operators.periods import misaligned_periods, misaligned_version
from operators.shard import IncompatibleStateError
from operators.synthetic import SyntheticSpec
from operators.windowing import WindowConfig
from sinks.clickhouse import (
    ClickHouseWriter,
    DsnError,
    SinkError,
    advertise_api,
    check_dsn,
    connect,
    rejected_counts,
    usage_totals,
)
from sinks.clickhouse_reports import window_totals
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_seeds import StoredPeriods
from sinks.kafka_dead_letters import ConfirmedProducer, DeadLetterError, DeadLetterProducer
from sinks.kafka_topics import TopicError, ensure_topic
from sinks.redis_client import redis_from_url
from sinks.redis_idempotency import IdempotencyError, IdempotencyUnavailable, RedisIdempotencyStore
from sinks.redis_lease import Fence
from sinks.redis_live_writer import LiveUsageWriter
from sinks.webhook_announcer import WebhookAnnouncer

log = logging.getLogger(__name__)

# Consumer defaults that matter for throughput; user settings override them.
KAFKA_CONSUMER_DEFAULTS = {"fetch.queue.backoff.ms": "10"}


def flow_spec(settings: Settings) -> FlowSpec:
    """Load and cross-check the catalogs named in ``settings``."""
    meters = load_meter_catalog(settings.catalogs.meters)
    pricing = load_pricing_catalog(settings.catalogs.pricing, meters)
    w = settings.window
    check_window_fits_periods(pricing, w.size)
    return FlowSpec(
        meters=meters,
        pricing=pricing,
        window=WindowConfig(w.size, w.grace, w.settlement_horizon, w.idle_timeout),
        dedup_horizon_ms=w.effective_dedup_horizon,
        shards=settings.flow.shards,
        engine=settings.flow.engine,
        max_event_bytes=settings.flow.max_event_bytes,
        max_future_skew_ms=w.max_future_skew,
        live_publish_interval_ms=settings.flow.live_publish_interval,
    )


def check_window_fits_periods(pricing: PricingCatalog, window_ms: int) -> None:
    """Refuse a window size that would straddle a price version's or a tenant's period start."""
    size = format_duration_ms(window_ms)
    version = misaligned_version(pricing, window_ms)
    if version is not None:
        raise ConfigError(
            f"window.size: {size} windows do not line up with plan {version.plan!r} version "
            f"{version.version!r}, which takes effect at {iso_utc(version.effective_from_ms)}, "
            f"inside a window; start the version on a {size} edge, or use a window size "
            f"that divides {format_duration_ms(version.step_ms)}"
        )
    found = misaligned_periods(pricing, window_ms)
    if found is None:
        return
    tenant = "tenants of default_plan" if found.tenant == "*" else f"tenant {found.tenant!r}"
    raise ConfigError(
        f"window.size: {size} windows do not line up with the "
        f"billing periods of {tenant} (anchor day {found.anchor_day}, {found.timezone}): "
        f"a period starts at {iso_utc(found.period_start_ms)[11:16]} UTC, inside a window; "
        f"use a window size that divides {format_duration_ms(found.step_ms)}"
    )


def make_source(
    settings: Settings, stop: StopRequest | None = None, clock: Clock = SYSTEM_CLOCK
) -> Source[Batch]:
    """The input named by ``settings.input.kind``; it ends early once ``stop`` is requested.

    ``clock`` stamps arrival times.
    """
    kind = settings.input.kind
    if kind == "kafka":
        k = settings.kafka
        # Emits batches through the Kafka connector's classes (see kafka_source).
        source = KafkaBatchSource(
            brokers=k.brokers.split(","),
            topics=k.topics,
            tail=k.tail,
            starting_offset=OFFSET_BEGINNING if k.starting_offset == "earliest" else OFFSET_END,
            add_config=k.client_config(),
            consumer_config=KAFKA_CONSUMER_DEFAULTS,
            batch_size=settings.input.batch_size,
            stop=stop,
        )
        return cast("Source[Batch]", source)
    if kind == "generator":
        g = settings.generator
        spec = SyntheticSpec(
            events=g.events,
            tenants=g.tenants,
            seed=g.seed,
            # Events end about now, so none is refused as being from the future.
            start_ms=clock.now_ms() - g.span,
            span_ms=g.span,
            partitions=g.partitions,
            duplicate_rate=g.duplicate_rate,
            late_rate=g.late_rate,
            late_by_ms=settings.window.grace + settings.window.size,
            invalid_rate=g.invalid_rate,
        )
        return SyntheticSource(spec, settings.input.batch_size, g.rate, stop, clock)
    return JsonlFileSource([settings.input.path], settings.input.batch_size, stop, clock)


def open_idempotency(
    settings: Settings, on_failure: Callable[[], None] | None = None, fence: Fence | None = None
) -> IdempotencyStore | None:
    """The Redis layer when ``redis.url`` is set; checked once here so a typo fails fast.

    Its claims are fenced by the output lease (``fence``; None: no lease).
    """
    r = settings.redis
    if r.url is None:
        return None
    url = r.url.get_secret_value()
    try:
        store = RedisIdempotencyStore.from_url(
            url,
            password=r.password(),
            ttl_s=r.ttl // 1000,
            key_prefix=r.key_prefix,
            on_failure=on_failure,
        )
        store.fence = fence or Fence()
        store.ping()
    except IdempotencyUnavailable as exc:
        raise ConfigError(
            f"redis.url: cannot reach Redis at {redact_url(url)} ({type(exc.__cause__).__name__}); "
            "check the address, or start local services with `meterwax services start`"
        ) from None
    except (ValueError, IdempotencyError) as exc:
        # A malformed URL, credentials or permissions: the message says which.
        raise ConfigError(f"redis.url: {exc}") from None
    return store


def dead_letter_opener(settings: Settings) -> Callable[[], DeadLetterProducer] | None:
    """How the rejection sink opens its producer, when dead letters are on."""
    if not settings.dead_letters_enabled:
        return None
    k = settings.kafka
    topic, config = k.dead_letter_topic or "", k.client_config()
    _ensure_output_topic(settings, topic, "kafka.dead_letter_topic")
    return lambda: DeadLetterProducer(k.brokers, topic, config)


def _ensure_output_topic(settings: Settings, topic: str, field: str) -> None:
    """Create a topic the flow writes to when missing (brokers often refuse auto-creation).

    Only the primary process does it, with the broker's default replication factor.
    """
    if not settings.flow.is_primary:
        return
    k = settings.kafka
    admin = AdminClient({**k.client_config(), "bootstrap.servers": k.brokers})
    try:
        ensure_topic(admin, topic, partitions=1, replication=-1)
    except TopicError as exc:
        raise ConfigError(f"{field}: {exc}") from None


def live_sink(
    settings: Settings,
    metrics: Metrics | None = None,
    clock: Clock = SYSTEM_CLOCK,
    lease: LeaseKeeper | None = None,
    pricing: PricingCatalog | None = None,
) -> LiveUsageSink | None:
    """Live counters in Redis (and quota events to Kafka) when Redis is configured.

    With ``lease``, counters are fenced by it and quota events wait for its check.
    With webhook endpoints (and ``pricing``), quota and spend webhooks are queued.
    """
    r = settings.redis
    if r.url is None:
        return None
    url, password = r.url.get_secret_value(), r.password()
    prefix = r.key_prefix

    def open_writer() -> LiveUsageWriter:
        writer = LiveUsageWriter(redis_from_url(url, password, None), prefix, clock=clock)
        writer.fence = Fence() if lease is None else lease.fence
        return writer

    opener = None
    if settings.quota_events_enabled:
        k = settings.kafka
        topic, config = k.quota_topic or "", k.client_config()
        _ensure_output_topic(settings, topic, "kafka.quota_topic")

        def opener() -> ConfirmedProducer:
            return ConfirmedProducer(k.brokers, topic, config)

    announcer = None
    if settings.webhooks.endpoints and pricing is not None:

        def announcer() -> WebhookAnnouncer:
            def plan_of(tenant: str) -> str | None:
                subscription = pricing.subscription_for(tenant)
                return None if subscription is None else subscription.plan

            client = redis_from_url(url, password, None)
            return WebhookAnnouncer(client, prefix, settings.webhooks, plan_of, clock)

    return LiveUsageSink(
        open_writer,
        opener,
        primary=settings.flow.is_primary,
        metrics=metrics,
        guard=None if lease is None else lease.check,
        open_announcer=announcer,
    )


def serve_metrics(settings: Settings) -> None:
    """Serve /metrics when ``metrics.port`` is set (each process on port + its id)."""
    m = settings.metrics
    if m.port is None:
        return
    port = m.port + (settings.flow.process_id or 0)
    METRICS.info.info({"version": version("meterwax")})
    try:
        serve(port, m.host)
    except OSError as exc:
        raise ConfigError(
            f"metrics.port: cannot serve metrics on {m.host}:{port} ({exc.strerror}); "
            "pick a free port, or leave metrics.port unset to turn the endpoint off"
        ) from None
    log.info("metrics on http://%s:%d/metrics", m.host, port)


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    """Bytewax recovery in ``recovery.directory``, initialised on first use."""
    r = settings.recovery
    if r.directory is None:
        return None
    r.directory.mkdir(parents=True, exist_ok=True)
    if not any(r.directory.glob("*.sqlite3")):
        init_db_dir(r.directory, r.partitions)  # type: ignore[no-untyped-call]
    return RecoveryConfig(  # type: ignore[no-untyped-call]
        r.directory, timedelta(milliseconds=r.backup_interval)
    )


def seed_reader(settings: Settings, spec: FlowSpec) -> StoredPeriods | None:
    """Where shards read the stored usage of the billing periods they meet first.

    None in a chDB cluster's other processes: only the primary may open chDB,
    so their shards start their periods from zero (use a ClickHouse server).
    """
    ch = settings.clickhouse
    dsn = ch.dsn.get_secret_value()
    if not settings.flow.is_primary and dsn.lower().startswith("chdb:"):
        log.warning(
            "chDB in a cluster: this process cannot read the stored usage of billing periods, "
            "so a restart without recovery prices its periods from zero; use a ClickHouse server"
        )
        return None
    aggregations = {m.slug: m.aggregation for m in spec.meters.meters}
    return StoredPeriods(dsn, ch.database, aggregations)


INSTANCE_FILE = "meterwax-instance"
# Exit code when a sink or Redis failed for good: the run stopped, input not acknowledged.
STOPPED = 3


def flow_instance_id(settings: Settings) -> str:
    """The id this flow claims events under in Redis.

    With recovery it is kept beside the snapshots: a restart (even after a crash
    before the first snapshot) is the same flow, whose replayed messages must not
    be duplicates of themselves. ``flow.instance_id`` sets it for a cluster whose
    processes have separate recovery directories. Without recovery every run is
    a new flow: what an earlier run counted is a duplicate.
    """
    if settings.flow.instance_id:
        return settings.flow.instance_id
    directory = settings.recovery.directory
    if directory is None:
        return uuid.uuid4().hex
    path = directory / INSTANCE_FILE
    if not path.exists():
        path.write_text(uuid.uuid4().hex + "\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


@contextmanager
def _engine_stdout_to_stderr() -> Iterator[None]:
    """Send what the engine prints (cluster connection retries) to stderr.

    It writes to file descriptor 1 from native code, where it would corrupt the
    summary (``--json``) that this command prints on stdout.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# Failures of an outside system that stop a run without losing anything.
STOPPING_ERRORS: tuple[type[Exception], ...] = (SinkError, DeadLetterError, IdempotencyError)


def _root_cause(error: BaseException, kinds: tuple[type[Exception], ...]) -> Exception | None:
    """The first exception of one of ``kinds`` in ``error``'s chain of causes."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kinds):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _report_stop(error: Exception, recovering: bool) -> None:
    if recovering:
        outcome = (
            "nothing was lost: run again once the cause is fixed; the flow resumes from its "
            "last snapshot and every write is idempotent"
        )
    else:
        outcome = (
            "without recovery, events of windows still open were not written: set "
            "recovery.directory in production"
        )
    print(f"meterwax: stopped: {error}\n{outcome}.", file=sys.stderr)


def exit_lease_lost(line: str) -> NoReturn:
    """Print the lease-lost line and end the process at once, like a crash.

    Raising instead would let the engine print a panic and flush its sinks.
    """
    print(f"meterwax: {line}", file=sys.stderr, flush=True)
    os._exit(LOST)


def run(settings: Settings, *, progress: bool, as_json: bool, clock: Clock = SYSTEM_CLOCK) -> int:
    """Run the flow to the end of its input; 0 when every message is accounted for.

    Refused (exit code 2) while another flow holds the lease of the same outputs.
    """
    try:
        check_dsn(settings.clickhouse.dsn.get_secret_value(), settings.clickhouse.database)
    except DsnError as exc:
        raise ConfigError(f"clickhouse.dsn: {exc}") from None
    # The catalogs first: a mistake there is the user's to fix before anything connects.
    spec = flow_spec(settings)
    check_input(settings)
    # Endpoint secrets kept in files are read (and checked) before anything connects.
    targets(settings)
    recovery = recovery_config(settings)
    directory = settings.recovery.directory
    # State saved by an earlier run of this flow (its id is kept beside the snapshots).
    resuming = directory is not None and (directory / INSTANCE_FILE).exists()
    instance = flow_instance_id(settings)
    try:
        with output_lease(settings, instance, clock, exit_lease_lost, resuming=resuming) as lease:
            return _run_flow(
                settings,
                spec,
                recovery,
                instance,
                lease,
                progress=progress,
                as_json=as_json,
                clock=clock,
            )
    except LeaseRefused as exc:
        print(f"meterwax: {exc}", file=sys.stderr)
        return REFUSED


def _run_flow(
    settings: Settings,
    spec: FlowSpec,
    recovery: RecoveryConfig | None,
    instance: str,
    lease: LeaseKeeper | None,
    *,
    progress: bool,
    as_json: bool,
    clock: Clock,
) -> int:
    primary = settings.flow.is_primary
    ch = settings.clickhouse
    dsn = ch.dsn.get_secret_value()
    try:
        spill = ch.chdb_group_by_spill_bytes
        client = connect(dsn, ch.database, chdb_group_by_spill_bytes=spill) if primary else None
        if client is not None:
            migrate(client, ch.database)
    except DsnError as exc:
        raise ConfigError(f"clickhouse.dsn: {exc}") from None
    except (SinkError, ClickHouseError, OSError) as exc:
        _report_stop(
            SinkError(f"cannot prepare ClickHouse at {redact_url(dsn)}: {exc}", attempts=1), True
        )
        return STOPPED
    advertise_api(dsn, None)
    api = EmbeddedApi(settings, clock) if settings.api.port is not None else None
    try:
        if api is not None:
            api.start()
            advertise_api(dsn, api.url)
            print(f"meterwax: API on {api.url}", file=sys.stderr)
        return _run_started(
            settings,
            spec,
            recovery,
            instance,
            lease,
            client=client,
            progress=progress,
            as_json=as_json,
            clock=clock,
        )
    finally:
        if api is not None:
            api.stop()
            advertise_api(dsn, None)


def _run_started(
    settings: Settings,
    spec: FlowSpec,
    recovery: RecoveryConfig | None,
    instance: str,
    lease: LeaseKeeper | None,
    *,
    client: Client | None,
    progress: bool,
    as_json: bool,
    clock: Clock,
) -> int:
    primary = settings.flow.is_primary
    ch = settings.clickhouse
    dsn = ch.dsn.get_secret_value()
    if recovery is None and settings.input.kind == "kafka":
        log.warning(
            "Kafka input without recovery: a restart reads again from %s and loses the "
            "events of windows that were still open; set recovery.directory",
            settings.kafka.starting_offset,
        )
    stop = StopRequest()
    spec = replace(
        spec,
        stop=stop,
        snapshots=recovery is not None,
        idempotency=open_idempotency(
            settings,
            METRICS.failure_counter("redis_claims"),
            None if lease is None else lease.fence,
        ),
        instance=instance,
        clock=clock,
    )
    spec = replace(spec, seeds=seed_reader(settings, spec))

    def open_writer() -> ClickHouseWriter:
        return ClickHouseWriter(
            connect(dsn, ch.database), ch.database, max_attempts=ch.max_attempts
        )

    guard = None if lease is None else lease.check
    metrics = METRICS
    metrics.clock = clock
    metrics.begin_run()
    serve_metrics(settings)
    stats = RunStats(metrics=metrics)
    flow = build_flow(
        spec,
        source=make_source(settings, stop, clock),
        window_sink=RatedWindowSink(open_writer, primary=primary, metrics=metrics, guard=guard),
        rejection_sink=RejectionSink(
            open_writer,
            primary=primary,
            open_dead_letters=dead_letter_opener(settings),
            metrics=metrics,
            guard=guard,
        ),
        event_log_sink=EventLogSink(
            open_writer,
            {m.slug: m.aggregation.value for m in spec.meters.meters},
            primary=primary,
            metrics=metrics,
            guard=guard,
        )
        if ch.event_log
        else None,
        live_sink=live_sink(settings, metrics, clock, lease, spec.pricing),
        stats=stats,
        metrics=metrics,
    )
    tune_gc()
    try:
        with (
            Progress(stats) if progress else nullcontext(),
            _engine_stdout_to_stderr(),
            stop_on_signals(stop),
            dispatching(settings, client, clock),
        ):
            cli_main(  # type: ignore[no-untyped-call]
                flow,
                workers_per_process=settings.flow.workers,
                process_id=settings.flow.process_id,
                addresses=settings.flow.addresses or None,
                epoch_interval=timedelta(milliseconds=settings.recovery.snapshot_interval),
                recovery_config=recovery,
            )
    except Exception as exc:
        # The engine may wrap a step's error (e.g. "error snapshotting StatefulSink").
        cause = _root_cause(exc, (IncompatibleStateError, *STOPPING_ERRORS))
        if isinstance(cause, IncompatibleStateError):
            raise ConfigError(f"recovery.directory: {cause}") from None
        if cause is None:
            raise
        _report_stop(cause, recovery is not None)
        return STOPPED
    release_freed_memory()
    totals = usage_totals(client, ch.database) if client is not None else []
    stored = rejected_counts(client, ch.database) if client is not None else {}
    aggregations = {m.slug: m.aggregation for m in spec.meters.meters}
    periods = (
        stored_periods(window_totals(client, ch.database), spec.pricing, aggregations)
        if client is not None
        else []
    )
    clustered = settings.flow.process_id is not None
    data = summary_data(stats, totals, stored, periods, clustered=clustered)
    data["latency_ms"] = metrics.latency_quantiles_ms()
    data["processing"] = metrics.processing(stats.consumed)
    data["stages"] = metrics.stage_totals()
    if as_json:
        # Written as built: json.dumps would first hold every piece of the text
        # (~1 GiB for the 300k usage rows of 100k tenants), and the rows themselves.
        write_json(data, sys.stdout)
        print()
    else:
        print(render_summary(data))
    report_stop(stop, recovery is not None)
    # A cluster member parses some events and meters others: only the sum over
    # all processes reconciles.
    return 0 if clustered or stats.reconciles else 1
