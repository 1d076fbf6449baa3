"""``meterwax bench``: end-to-end throughput against the raw Kafka ceiling, checked against truth.

One run: preload a new topic with ``benchmarks.load`` events, then measure

* the raw ceiling: a confluent-kafka batch consumer that reads the topic and
  parses each message with orjson, nothing else;
* the flow: ``meterwax run --input kafka --no-tail`` as a subprocess, timed
  from start to exit (and to its first event, seen as its Redis claim).

The flow's ``--json`` summary must match the generator's ground truth (counts
and usage per tenant and meter) and ``meterwax reconcile`` must pass over the
events' range; any difference fails the run (exit 1). Results go to
``report.json``, ``report.md`` and ``chart.png`` in ``--out``. With
``--latency-rate`` a second phase measures latency at a steady rate
(``benchmarks.latency``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from benchmarks import load as load_generator
from benchmarks.latency import LatencyError, latency_summary, measure_latency
from cli.local_services import (
    RunningService,
    ServiceError,
    free_port,
    start_redis,
    start_tansu,
    stop,
)
from config.display import iso_utc as _iso
from sinks.kafka_topics import TopicError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "config" / "examples"
METERWAX = [sys.executable, "-m", "cli.main"]
POLL_S = 0.02
PROGRESS_EVERY_S = 2.0
FLOW_TIMEOUT_S = 3600.0
RECONCILE_TIMEOUT_S = 600.0
FAILED = 1
SETUP_FAILED = 2


def load_module() -> ModuleType | None:
    """``benchmarks.load``, the load generator (a package of the project since issue 14)."""
    return load_generator


class BenchError(RuntimeError):
    """The benchmark could not be set up or run; the message says what failed."""


@dataclass
class FlowRun:
    """What the flow subprocess did."""

    exit_code: int
    seconds: float
    first_event_s: float | None
    peak_rss_bytes: int
    summary: dict[str, Any] | None
    stderr_tail: str


@dataclass
class Checks:
    """Ground-truth and reconcile checks: each failure as one line."""

    failures: list[str] = field(default_factory=list)
    compared: int = 0
    reconcile_windows: int | None = None

    @property
    def passed(self) -> bool:
        """Whether nothing differed."""
        return not self.failures


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` to the ``meterwax`` parser."""
    bench = sub.add_parser(
        "bench",
        help="benchmark the flow end to end against the raw Kafka ceiling",
        description="Preload a topic, measure raw consume+parse and the flow, check the "
        "flow's totals against the ground truth and reconcile. Exits 1 on any difference, "
        "2 if the services or the topic cannot be set up.",
    )
    load = load_module()
    if load is not None:
        load.add_spec_arguments(bench)
    bench.add_argument("--partitions", type=int, default=3, metavar="N", help="topic partitions")
    bench.add_argument("--rate", type=float, default=0.0, help="preload events/s; 0 = unlimited")
    bench.add_argument("--workers", type=int, default=1, metavar="N", help="flow worker threads")
    bench.add_argument(
        "--processes", type=int, default=1, metavar="N", help="flow processes (a local cluster)"
    )
    bench.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        metavar="EV_S",
        help="then measure latency while producing at this rate (0: skip)",
    )
    bench.add_argument(
        "--latency-seconds",
        type=float,
        default=20.0,
        metavar="S",
        help="how long to produce at --latency-rate",
    )
    bench.add_argument("--out", type=Path, help="report directory (default: benchmarks/out/TIME)")
    bench.add_argument("--brokers", help="Kafka bootstrap servers (default: start a local broker)")
    bench.add_argument("--redis-url", help="Redis URL (default: start a local redis-server)")


def _progress(text: str) -> None:
    end = "\r" if sys.stderr.isatty() else "\n"
    print(f"bench: {text}\033[K" if end == "\r" else f"bench: {text}", end=end, file=sys.stderr)


def _done(text: str) -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"bench: {text}", file=sys.stderr)


def raw_ceiling(brokers: str, topic: str, partitions: int) -> tuple[int, int, float]:
    """(messages read, messages parsed, seconds): batch consume + orjson, nothing else."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"meterwax-bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "fetch.queue.backoff.ms": "10",
        }
    )
    started = time.monotonic()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    read = parsed = 0
    open_partitions = set(range(partitions))
    try:
        while open_partitions:
            for msg in consumer.consume(1000, 1.0):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(msg.partition())
                        continue
                    raise BenchError(f"raw consumer: {error}")
                read += 1
                try:
                    orjson.loads(msg.value() or b"")
                except orjson.JSONDecodeError:
                    continue
                parsed += 1
    finally:
        seconds = time.monotonic() - started
        consumer.close()
    return read, parsed, seconds


def _vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run_flow(
    config: Path, workdir: Path, redis_url: str, first_key: str, processes: int = 1
) -> FlowRun:
    """``meterwax run --no-tail --json`` with ``config``, as ``processes`` cluster members.

    Timed until the last process exits; peak RSS is the sum of every process's peak.
    The summaries are merged: run counts add up, usage comes from process 0 (it
    reads ClickHouse, which holds every process's windows).
    """
    watcher = redis.Redis.from_url(redis_url)
    argv = [*METERWAX, "run", "--config", str(config), "--no-tail", "--json", "--no-progress"]
    cluster: list[list[str]] = [[]]
    if processes > 1:
        addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        cluster = [["--process-id", str(i), "--addresses", addresses] for i in range(processes)]
    started = time.monotonic()
    popens = []
    for i, extra in enumerate(cluster):
        with (
            (workdir / f"flow{i}.out").open("wb") as out,
            (workdir / f"flow{i}.err").open("wb") as err,
        ):
            popens.append(
                subprocess.Popen(
                    [*argv, *extra], stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=workdir
                )
            )
    peaks = [0] * len(popens)
    first_event_s: float | None = None
    last_progress = started
    while any(p.poll() is None for p in popens):
        now = time.monotonic()
        peaks = [max(peak, _vm_hwm(p.pid)) for peak, p in zip(peaks, popens, strict=True)]
        if first_event_s is None:
            try:
                if watcher.exists(first_key):
                    first_event_s = now - started
            except redis.RedisError:
                pass
        if now - last_progress >= PROGRESS_EVERY_S:
            last_progress = now
            phase = "starting" if first_event_s is None else "metering"
            rss = sum(peaks) / 2**20
            _progress(f"flow {phase}: {now - started:6.1f} s, peak RSS {rss:,.0f} MiB")
        if now - started > FLOW_TIMEOUT_S:
            for p in popens:
                p.kill()
        time.sleep(POLL_S)
    seconds = time.monotonic() - started
    if len(popens) == 1:
        # The flow is the only child waited for so far: its peak, in KiB on Linux.
        peaks[0] = max(peaks[0], resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    failed = next((p for p in popens if p.returncode != 0), None)
    exit_code = 0 if failed is None else failed.returncode
    stderr = "".join(
        (workdir / f"flow{i}.err").read_text(errors="replace")[-3000:] for i in range(len(popens))
    )
    summary = None
    if failed is None:
        try:
            summaries = [
                json.loads((workdir / f"flow{i}.out").read_text()) for i in range(len(popens))
            ]
            summary = merge_summaries(summaries)
        except json.JSONDecodeError:
            summary = None
    return FlowRun(exit_code, seconds, first_event_s, sum(peaks), summary, stderr[-3000:])


def merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary for a cluster: counts added up, usage and latency from process 0."""
    if len(summaries) == 1:
        return summaries[0]
    merged = dict(summaries[0])
    run: dict[str, Any] = {"rejected": {}}
    for summary in summaries:
        for name, value in summary["run"].items():
            if name == "rejected":
                for reason, count in value.items():
                    run["rejected"][reason] = run["rejected"].get(reason, 0) + count
            elif isinstance(value, int) and not isinstance(value, bool):
                run[name] = run.get(name, 0) + value
    rejected = sum(run["rejected"].values())
    run["reconciles"] = run["consumed"] == run["accepted"] + run["duplicates"] + rejected
    merged["run"] = run
    return merged


def check_summary(summary: dict[str, Any], truth: dict[str, Any], checks: Checks) -> None:
    """Counts and usage per (tenant, meter) of the run against the ground truth."""
    run = summary["run"]
    expected_counts = {
        "consumed": truth["messages"],
        "accepted": truth["originals"],
        "duplicates": truth["duplicates"],
        "rejected": truth["invalid"],
    }
    actual_counts = {**run, "rejected": sum(run["rejected"].values())}
    for name, expected in expected_counts.items():
        if actual_counts[name] != expected:
            checks.failures.append(f"{name}: expected {expected}, flow says {actual_counts[name]}")
    if run.get("reconciles") is not True:
        checks.failures.append("the run's own counts do not reconcile")
    got: dict[tuple[str, str], Decimal] = {}
    for row in summary["usage"]:
        key = (row["tenant"], row["meter"])
        got[key] = got.get(key, Decimal(0)) + Decimal(row["quantity"])
    want = {
        (tenant, meter): Decimal(quantity)
        for tenant, meters in truth["usage"].items()
        for meter, quantity in meters.items()
    }
    for key in sorted(want.keys() | got.keys()):
        checks.compared += 1
        if want.get(key) != got.get(key):
            checks.failures.append(
                f"usage {key[0]}/{key[1]}: expected {want.get(key)}, flow says {got.get(key)}"
            )


def run_reconcile(config: Path, workdir: Path, truth: dict[str, Any], checks: Checks) -> None:
    """``meterwax reconcile`` over whole windows covering every event; differences fail."""
    size = truth["window_ms"]
    start = truth["min_time_ms"] - truth["min_time_ms"] % size
    end = truth["max_time_ms"] - truth["max_time_ms"] % size + size
    span = ("--from", _iso(start), "--to", _iso(end))
    completed = subprocess.run(
        [*METERWAX, "reconcile", "--config", str(config), "--json", *span],
        capture_output=True,
        text=True,
        timeout=RECONCILE_TIMEOUT_S,
        cwd=workdir,
        check=False,
    )
    (workdir / "reconcile.json").write_text(completed.stdout)
    if completed.returncode not in (0, 1):
        checks.failures.append(f"reconcile exit {completed.returncode}: {completed.stderr[-500:]}")
        return
    result = json.loads(completed.stdout)
    checks.reconcile_windows = result["windows"]
    for d in result["differences"][:20]:
        checks.failures.append(f"reconcile: {d}")
    if completed.returncode == 1 and not result["differences"]:
        checks.failures.append("reconcile exited 1")


def _flow_config(
    out: Path,
    *,
    brokers: str,
    topic: str,
    redis_url: str,
    prefix: str,
    workers: int,
    name: str = "meterwax",
) -> Path:
    config = {
        "input": {"kind": "kafka"},
        "catalogs": {
            "meters": str(EXAMPLES / "meters.yaml"),
            "pricing": str(EXAMPLES / "pricing.yaml"),
        },
        "kafka": {
            "brokers": brokers,
            "topics": [topic],
            "dead_letter_topic": f"{topic}-dead-letters",
        },
        "redis": {"url": redis_url, "key_prefix": prefix},
        "clickhouse": {
            "dsn": f"chdb://{out / ('ch' if name == 'meterwax' else f'ch-{name}')}",
            "database": "bench",
        },
        "flow": {"workers": workers},
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def _idem_key(prefix: str, tenant: str, source: str, event_id: str) -> str:
    # The flow's Redis claim key (README, "Redis idempotency sets").
    return f"{prefix}:idem:{len(tenant)}:{tenant}:{len(source)}:{source}:{event_id}"


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the figures and the checks."""
    raw, flow = report["raw_ceiling"], report["flow"]
    first = flow["first_event_s"]
    lines = [
        f"# meterwax bench {report['started']}",
        "",
        f"{report['load']['messages']:,} messages ({report['load']['events']:,} events, "
        f"{report['load']['tenants']} tenants, {report['partitions']} partitions, "
        f"{report['workers']} worker(s)); preload {report['preload_events_per_s']:,.0f} msg/s.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| raw ceiling (consume + orjson) | {raw['events_per_s']:,.0f} events/s "
        f"({raw['seconds']:.2f} s) |",
        f"| meterwax flow, end to end | {flow['events_per_s']:,.0f} events/s "
        f"({flow['seconds']:.2f} s) |",
        f"| flow / raw ceiling | {report['ratio']:.3f} |",
        f"| time to first event | {'n/a' if first is None else f'{first:.2f} s'} |",
        f"| flow after first event | {flow['events_per_s_after_first_event'] or 0:,.0f} events/s |",
        f"| flow peak RSS | {flow['peak_rss_bytes'] / 2**20:,.0f} MiB |",
        "",
        f"Ground truth: {'PASSED' if report['checks']['passed'] else 'FAILED'} "
        f"({report['checks']['compared']} tenant/meter quantities compared, "
        f"reconcile over {report['checks']['reconcile_windows']} windows).",
    ]
    lines += [f"- {failure}" for failure in report["checks"]["failures"]]
    lines.append("")
    latency = report.get("latency")
    if latency is not None:
        lines += [
            "",
            f"## Latency at {latency['rate']:,.0f} events/s",
            "",
            f"{latency['messages']:,} messages produced at {latency['produced_per_s']:,.0f}/s; "
            f"the flow had consumed them all {latency['consumed_all_after_s']:.1f} s after "
            f"production started ({'kept up' if latency['kept_up'] else 'fell behind'}).",
            "",
            "| from arrival to | p50 | p99 | sampled events |",
            "|---|---|---|---|",
        ]
        for stage, q in latency["latency_ms"].items():
            lines.append(f"| {stage} | {q['p50']} ms | {q['p99']} ms | {q['samples']:,.0f} |")
    lines.append("")
    lines.append("![throughput and latency](chart.png)")
    return "\n".join(lines) + "\n"


def _start_services(args: argparse.Namespace, out: Path) -> list[RunningService]:
    started: list[RunningService] = []
    try:
        if args.brokers is None:
            kafka = start_tansu(out / "services")
            started.append(kafka)
            args.brokers = kafka.address
        if args.redis_url is None:
            server = start_redis(out / "services")
            started.append(server)
            args.redis_url = f"redis://{server.address}/0"
    except ServiceError:
        for service in started:
            stop(service.pid)
        raise
    for service in started:
        _done(f"started {service.name} on {service.address}")
    return started


def bench(args: argparse.Namespace, out: Path) -> int:
    """The benchmark proper, with brokers and Redis in ``args``; the exit code."""
    load = load_module()
    assert load is not None, "checked by main()"
    started = datetime.now(UTC).isoformat(timespec="seconds")
    run_id = uuid.uuid4().hex[:8]
    topic = f"meterwax-bench-{run_id}"
    prefix = f"bench-{run_id}"
    source = f"bench/{run_id}"
    spec = load.spec_from_args(args, source)
    generator = load.LoadGenerator(spec)
    _progress(f"preloading {spec.events:,} events into {topic!r} ...")
    produced = load.write_kafka(
        generator.payloads(), args.brokers, topic, partitions=args.partitions, rate=args.rate
    )
    truth = generator.truth.to_json(spec)
    load.write_truth(out / "truth.json", truth)
    if produced.failed:
        raise BenchError(f"{produced.failed} messages not delivered: {produced.first_error}")
    preload_rate = produced.sent / produced.seconds if produced.seconds else 0.0
    _done(f"preloaded {produced.sent:,} messages in {produced.seconds:.1f} s")

    _progress("raw ceiling: consuming the topic ...")
    read, parsed, raw_s = raw_ceiling(args.brokers, topic, args.partitions)
    raw_rate = read / raw_s if raw_s else 0.0
    _done(f"raw ceiling: {read:,} messages in {raw_s:.2f} s = {raw_rate:,.0f} events/s")

    config = _flow_config(
        out,
        brokers=args.brokers,
        topic=topic,
        redis_url=args.redis_url,
        prefix=prefix,
        workers=args.workers,
    )
    first_key = _idem_key(prefix, generator.first_tenant, source, generator.first_id)
    flow = run_flow(config, out, args.redis_url, first_key, args.processes)
    checks = Checks()
    consumed = 0
    if flow.summary is None:
        checks.failures.append(f"flow exited {flow.exit_code}:\n{flow.stderr_tail}")
    else:
        consumed = flow.summary["run"]["consumed"]
        check_summary(flow.summary, truth, checks)
        run_reconcile(config, out, truth, checks)
    flow_rate = consumed / flow.seconds if flow.seconds else 0.0
    after_first = None
    if flow.first_event_s is not None and flow.seconds > flow.first_event_s:
        after_first = consumed / (flow.seconds - flow.first_event_s)
    _done(
        f"flow: {consumed:,} messages in {flow.seconds:.2f} s = {flow_rate:,.0f} events/s, "
        f"peak RSS {flow.peak_rss_bytes / 2**20:,.0f} MiB"
    )
    report: dict[str, Any] = {
        "started": started,
        "out": str(out),
        "load": {**truth["spec"], "messages": truth["messages"]},
        "partitions": args.partitions,
        "workers": args.workers,
        "processes": args.processes,
        "topic": topic,
        "preload_events_per_s": preload_rate,
        "raw_ceiling": {
            "events": read,
            "parsed": parsed,
            "seconds": raw_s,
            "events_per_s": raw_rate,
        },
        "flow": {
            "exit_code": flow.exit_code,
            "events": consumed,
            "seconds": flow.seconds,
            "events_per_s": flow_rate,
            "first_event_s": flow.first_event_s,
            "events_per_s_after_first_event": after_first,
            "peak_rss_bytes": flow.peak_rss_bytes,
        },
        "ratio": flow_rate / raw_rate if raw_rate else 0.0,
        "checks": {
            "passed": checks.passed,
            "compared": checks.compared,
            "reconcile_windows": checks.reconcile_windows,
            "failures": checks.failures,
        },
    }
    if args.latency_rate > 0 and checks.passed:
        report["latency"] = _latency_phase(args, out, load, spec, run_id)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    bars = [("raw ceiling", raw_rate), ("meterwax flow", flow_rate)]
    if after_first is not None:
        bars.append(("flow after first event", after_first))
    latency = report.get("latency", {}).get("latency_ms")
    try:
        from benchmarks.chart import render_png  # noqa: PLC0415 — an optional extra
    except ImportError:
        _done("no chart.png: install the bench extra (pip install 'meterwax[bench]')")
    else:
        render_png(out / "chart.png", bars, latency)
    print(
        f"raw ceiling {raw_rate:,.0f} ev/s | flow {flow_rate:,.0f} ev/s | "
        f"ratio {report['ratio']:.3f} | peak RSS {flow.peak_rss_bytes / 2**20:,.0f} MiB | "
        f"ground truth {'PASSED' if checks.passed else 'FAILED'} | report in {out}"
    )
    if not checks.passed:
        print("meterwax bench: FAILED, the flow's output differs:", file=sys.stderr)
        for failure in checks.failures[:50]:
            print(f"  {failure}", file=sys.stderr)
        return FAILED
    return 0


def _latency_phase(
    args: argparse.Namespace, out: Path, load: ModuleType, spec: Any, run_id: str
) -> dict[str, Any]:
    events = max(1, int(args.latency_rate * args.latency_seconds))
    topic = f"meterwax-latency-{run_id}"
    config = _flow_config(
        out,
        brokers=args.brokers,
        topic=topic,
        redis_url=args.redis_url,
        prefix=f"latency-{run_id}",
        workers=args.workers,
        name="latency",
    )
    _progress(f"latency: producing {events:,} events at {args.latency_rate:,.0f}/s ...")
    result = measure_latency(
        load,
        replace(spec, events=events, seed=spec.seed + 1),
        brokers=args.brokers,
        topic=topic,
        partitions=args.partitions,
        rate=args.latency_rate,
        config=config,
        workdir=out,
        metrics_port=free_port(),
    )
    _done(f"latency: {latency_summary(result)}")
    return result


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax bench``: 0 when the flow matches the ground truth, 1 if not, 2 on set-up."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = (args.out or REPO / "benchmarks" / "out" / stamp).resolve()
    load = load_module()
    if load is None:
        print("meterwax bench: needs benchmarks/ from a clone of the repository", file=sys.stderr)
        return SETUP_FAILED
    out.mkdir(parents=True, exist_ok=True)
    try:
        load.spec_from_args(args).check()
    except ValueError as exc:
        print(f"meterwax bench: {exc}", file=sys.stderr)
        return SETUP_FAILED
    try:
        services = _start_services(args, out)
    except ServiceError as exc:
        print(f"meterwax bench: {exc}", file=sys.stderr)
        return SETUP_FAILED
    try:
        return bench(args, out)
    except (BenchError, LatencyError, TopicError, KafkaException, redis.RedisError) as exc:
        print(f"meterwax bench: {exc}", file=sys.stderr)
        return SETUP_FAILED
    finally:
        for service in services:
            stop(service.pid)
