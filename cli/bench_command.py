"""``meterwax bench``: end-to-end throughput against the raw Kafka ceiling, checked against truth.

One run: preload a new topic with the events of a workload (``benchmarks.load``,
``--workload w1|w2``), then measure

* the raw ceiling (``benchmarks.raw``, a process of its own): batch
  consume plus orjson, nothing else, timed from the first message to the
  last; measured before the flows and again after them;
* the flow in each ``--mode``: ``meterwax run --input kafka --no-tail`` as a
  subprocess, timed by the flow itself from its first input batch to its last
  write (its ``--json`` summary's ``processing``), with time per stage.

``lean`` is state dedup, windows, rating and rated windows into chDB; ``full``
adds Redis idempotency, the event log, live counters and dead letters. Each
flow's summary must match the generator's ground truth (counts and usage per
tenant and meter) and, in ``full``, ``meterwax reconcile`` must pass over the
events' range; any difference fails the run (exit 1). Results go to
``report.json``, ``report.md`` and ``chart.png`` in ``--out``. With
``--latency-rate`` a last phase measures latency at a steady rate in ``full``
(``benchmarks.latency``).
"""

from __future__ import annotations

import argparse
import json
import shlex
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

import redis
from confluent_kafka import KafkaException

from benchmarks import load as load_generator
from benchmarks.latency import LatencyError, latency_summary, measure_latency
from config.display import iso_utc as _iso
from config.errors import ConfigError
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from config.settings import DEFAULT_BATCH_SIZE
from sinks.kafka_topics import TopicError
from sinks.local_services import (
    RunningService,
    ServiceError,
    free_port,
    start_redis,
    start_tansu,
    stop,
)

REPO = Path(__file__).resolve().parents[1]
METERWAX = [sys.executable, "-m", "cli.main"]
POLL_S = 0.02
PROGRESS_EVERY_S = 2.0
FLOW_TIMEOUT_S = 3600.0
RAW_TIMEOUT_S = 600.0
RECONCILE_TIMEOUT_S = 600.0
MODES = ("lean", "full")
ENGINES = ("python", "native")
FAILED = 1
SETUP_FAILED = 2


def load_module() -> ModuleType:
    """``benchmarks.load``, the load generator (a package of the project)."""
    return load_generator


class BenchError(RuntimeError):
    """The benchmark could not be set up or run; the message says what failed."""


@dataclass
class FlowRun:
    """What the flow subprocess did; ``wall_seconds`` includes its start-up."""

    exit_code: int
    wall_seconds: float
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
        description="Preload a topic with a workload, measure raw consume+parse and the flow "
        "(lean, full or both), check the flow's totals against the ground truth and "
        "reconcile. Exits 1 on any difference, 2 if the services or the topic cannot be set up.",
    )
    load = load_module()
    if load is not None:
        load.add_spec_arguments(bench)
    bench.add_argument(
        "--mode",
        choices=(*MODES, "both"),
        default="both",
        help="lean: state dedup, windows, rating, rated windows into chDB; full: plus Redis "
        "idempotency, event log, live counters, dead letters; both: lean then full",
    )
    bench.add_argument(
        "--engine",
        choices=(*ENGINES, "both"),
        default="python",
        help="flow.engine of the flows: python, native or both, "
        "one after the other in the same run",
    )
    bench.add_argument("--meters", type=Path, help="meter catalog (default: the workload's)")
    bench.add_argument("--pricing", type=Path, help="pricing catalog (default: the workload's)")
    bench.add_argument(
        "--partitions", type=int, metavar="N", help="topic partitions (default: the workload's)"
    )
    bench.add_argument("--rate", type=float, default=0.0, help="preload events/s; 0 = unlimited")
    bench.add_argument("--workers", type=int, default=1, metavar="N", help="flow worker threads")
    bench.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"input.batch_size of the flows: messages per Kafka poll (default "
        f"{DEFAULT_BATCH_SIZE}, the flow's default)",
    )
    bench.add_argument(
        "--processes", type=int, default=1, metavar="N", help="flow processes (a local cluster)"
    )
    bench.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        metavar="EV_S",
        help="then measure latency (full mode) while producing at this rate (0: skip)",
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


def raw_ceiling(brokers: str, topic: str, partitions: int) -> dict[str, Any]:
    """One pass of ``benchmarks.raw`` over ``topic``, in a process of its own."""
    argv = [sys.executable, "-m", "benchmarks.raw", "--brokers", brokers]
    argv += ["--topic", topic, "--partitions", str(partitions)]
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=RAW_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"raw ceiling: no result within {RAW_TIMEOUT_S:.0f} s") from None
    if completed.returncode != 0:
        raise BenchError(f"raw ceiling failed: {completed.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def ceiling(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The raw ceiling of several passes: the fastest (ratios are not flattered), and the spread."""
    rates = [run["events_per_s"] for run in runs]
    best = max(runs, key=lambda run: run["events_per_s"])
    return {
        **best,
        "runs": runs,
        "spread": (max(rates) - min(rates)) / max(rates) if max(rates) else 0.0,
    }


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


def run_flow(config: Path, workdir: Path, name: str, processes: int = 1) -> FlowRun:
    """``meterwax run --no-tail --json`` with ``config``, as ``processes`` cluster members.

    Outputs go to ``workdir/<name><i>.out|err``. The wall time runs until the last
    process exits; peak RSS is the sum of every process's peak. The summaries are
    merged: run counts and stage times add up, usage comes from process 0 (it reads
    ClickHouse, which holds every process's windows).
    """
    argv = [*METERWAX, "run", "--config", str(config), "--no-tail", "--json", "--no-progress"]
    cluster: list[list[str]] = [[]]
    if processes > 1:
        addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        cluster = [["--process-id", str(i), "--addresses", addresses] for i in range(processes)]
    started = time.monotonic()
    popens = []
    for i, extra in enumerate(cluster):
        with (
            (workdir / f"{name}{i}.out").open("wb") as out,
            (workdir / f"{name}{i}.err").open("wb") as err,
        ):
            popens.append(
                subprocess.Popen(
                    [*argv, *extra], stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=workdir
                )
            )
    peaks = [0] * len(popens)
    last_progress = started
    while any(p.poll() is None for p in popens):
        now = time.monotonic()
        peaks = [max(peak, _vm_hwm(p.pid)) for peak, p in zip(peaks, popens, strict=True)]
        if now - last_progress >= PROGRESS_EVERY_S:
            last_progress = now
            rss = sum(peaks) / 2**20
            _progress(f"flow {name}: {now - started:6.1f} s, peak RSS {rss:,.0f} MiB")
        if now - started > FLOW_TIMEOUT_S:
            for p in popens:
                p.kill()
        time.sleep(POLL_S)
    seconds = time.monotonic() - started
    failed = next((p for p in popens if p.returncode != 0), None)
    exit_code = 0 if failed is None else failed.returncode
    stderr = "".join(
        (workdir / f"{name}{i}.err").read_text(errors="replace")[-3000:] for i in range(len(popens))
    )
    summary = None
    if failed is None:
        try:
            summaries = [
                json.loads((workdir / f"{name}{i}.out").read_text()) for i in range(len(popens))
            ]
            summary = merge_summaries(summaries)
        except json.JSONDecodeError:
            summary = None
    return FlowRun(exit_code, seconds, sum(peaks), summary, stderr[-3000:])


def merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary for a cluster: counts and stage times added up, usage from process 0.

    The cluster's processing time is its slowest process's.
    """
    if len(summaries) == 1:
        return summaries[0]
    merged = dict(summaries[0])
    run: dict[str, Any] = {"rejected": {}}
    stages: dict[str, dict[str, float]] = {}
    for summary in summaries:
        for name, value in summary["run"].items():
            if name == "rejected":
                for reason, count in value.items():
                    run["rejected"][reason] = run["rejected"].get(reason, 0) + count
            elif isinstance(value, int) and not isinstance(value, bool):
                run[name] = run.get(name, 0) + value
        for stage, spent in summary.get("stages", {}).items():
            total = stages.setdefault(stage, {"seconds": 0.0, "batches": 0.0})
            total["seconds"] += spent["seconds"]
            total["batches"] += spent["batches"]
    rejected = sum(run["rejected"].values())
    run["reconciles"] = run["consumed"] == run["accepted"] + run["duplicates"] + rejected
    merged["run"] = run
    merged["stages"] = stages
    spans = [s["processing"]["seconds"] for s in summaries if s.get("processing")]
    seconds = max((x for x in spans if x is not None), default=None)
    merged["processing"] = {
        "seconds": seconds,
        "events_per_s": run["consumed"] / seconds if seconds else None,
    }
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
    redis_url: str | None,
    prefix: str,
    workers: int,
    catalogs: tuple[Path, Path],
    window: tuple[str, str],
    mode: str,
    name: str,
    engine: str = "python",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Path:
    """The flow's settings file: ``lean`` has no Redis, event log or dead letters."""
    full = mode == "full"
    config: dict[str, Any] = {
        "input": {"kind": "kafka", "batch_size": batch_size},
        "catalogs": {"meters": str(catalogs[0]), "pricing": str(catalogs[1])},
        "window": {"size": window[0], "grace": window[1]},
        "kafka": {
            "brokers": brokers,
            "topics": [topic],
            "dead_letter_topic": f"{topic}-dead-letters" if full else None,
            "quota_topic": f"{topic}-quota-events" if full else None,
        },
        "clickhouse": {
            "dsn": f"chdb://{out / f'ch-{name}'}",
            "database": "bench",
            "event_log": full,
        },
        "flow": {"workers": workers, "engine": engine},
    }
    if full:
        config["redis"] = {"url": redis_url, "key_prefix": prefix}
    path = out / f"{name}.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


# Sinks that write in a thread of their own (dataflows.outputs.BufferedPartition):
# their time overlaps the flow thread's stages.
BACKGROUND_STAGES = ("write_clickhouse_",)


def stage_table(
    stages: dict[str, dict[str, float]],
    processing_s: float | None,
    events: int,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Time per stage: seconds, share of the processing time and microseconds per event.

    Stage seconds are summed over the flow's ``threads`` (workers times processes),
    so shares are of ``processing_s * threads``. The last row is what no stage
    timer covers (the engine, shard split, routing, waiting for input); the
    ClickHouse writes run in threads of their own, overlapping the rest, so
    they are marked and left out of it.
    """
    if processing_s:
        processing_s *= threads
    rows: list[dict[str, Any]] = [
        {
            "stage": f"{stage} (own thread)" if stage.startswith(BACKGROUND_STAGES) else stage,
            "seconds": spent["seconds"],
            "batches": int(spent["batches"]),
            "share": spent["seconds"] / processing_s if processing_s else None,
            "us_per_event": spent["seconds"] * 1e6 / events if events else None,
        }
        for stage, spent in stages.items()
    ]
    if processing_s:
        rest = processing_s - sum(
            row["seconds"] for row in rows if not row["stage"].endswith("(own thread)")
        )
        rows.append(
            {
                "stage": "other (engine, shard split, routing, input wait)",
                "seconds": rest,
                "batches": None,
                "share": rest / processing_s,
                "us_per_event": rest * 1e6 / events if events else None,
            }
        )
    return rows


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} events/s"


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the figures, the time per stage and the checks."""
    raw, load = report["raw_ceiling"], report["load"]
    runs = ", ".join(f"{r['events_per_s']:,.0f}" for r in raw["runs"])
    lines = [
        f"# meterwax bench {report['started']}",
        "",
        f"Workload {report['workload']['name']}: {report['workload']['summary']}.",
        f"{load['messages']:,} messages ({load['events']:,} events, {load['tenants']:,} tenants, "
        f"{report['partitions']} partitions, {report['workers']} worker(s), "
        f"batches of {report.get('batch_size', 1000):,}); "
        f"preload {report['preload_events_per_s']:,.0f} msg/s.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| measure | events/s | seconds | ratio to raw |",
        "|---|---|---|---|",
        f"| raw ceiling: consume(10000) + orjson, fastest of {len(raw['runs'])} | "
        f"{raw['events_per_s']:,.0f} | {raw['seconds']:.2f} | 1.000 |",
    ]
    for mode, result in report["modes"].items():
        flow = result["flow"]
        seconds = flow["seconds"]
        lines.append(
            f"| meterwax {mode}, first message to last write | {_rate(flow['events_per_s'])} | "
            f"{'n/a' if seconds is None else f'{seconds:.2f}'} | {result['ratio']:.3f} |"
        )
    lines += [
        "",
        f"Raw ceiling passes (before, after the flows): {runs} events/s; "
        f"spread {raw['spread']:.1%}.",
    ]
    for mode, result in report["modes"].items():
        flow, checks = result["flow"], result["checks"]
        reconcile = (
            "no reconcile (lean keeps no event log)"
            if checks["reconcile_windows"] is None
            else f"reconcile over {checks['reconcile_windows']} windows"
        )
        lines += [
            "",
            f"## {mode}",
            "",
            f"Wall time with start-up {flow['wall_seconds']:.2f} s; peak RSS "
            f"{flow['peak_rss_bytes'] / 2**20:,.0f} MiB. Ground truth: "
            f"{'PASSED' if checks['passed'] else 'FAILED'} ({checks['compared']} tenant/meter "
            f"quantities compared, {reconcile}).",
        ]
        lines += [f"- {failure}" for failure in checks["failures"]]
        threads = report["workers"] * report["processes"]
        if threads > 1:
            lines += ["", f"Stage seconds are summed over the {threads} workers (shares of "
                      f"{threads} × the processing time)."]  # fmt: skip
        lines += ["", "| stage | seconds | share | µs/event | batches |", "|---|---|---|---|---|"]
        for row in result["stages"]:
            share = "n/a" if row["share"] is None else f"{row['share']:.1%}"
            per_event = "n/a" if row["us_per_event"] is None else f"{row['us_per_event']:.2f}"
            batches = "" if row["batches"] is None else f"{row['batches']:,}"
            lines.append(
                f"| {row['stage']} | {row['seconds']:.3f} | {share} | {per_event} | {batches} |"
            )
    latency = report.get("latency")
    if latency is not None:
        lines += [
            "",
            f"## Latency at {latency['rate']:,.0f} events/s (full)",
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
    lines += ["", "![throughput and latency](chart.png)"]
    return "\n".join(lines) + "\n"


def _start_services(args: argparse.Namespace, out: Path) -> list[RunningService]:
    started: list[RunningService] = []
    try:
        if args.brokers is None:
            kafka = start_tansu(out / "services")
            started.append(kafka)
            args.brokers = kafka.address
        # Lean flows do without Redis; full ones and the latency phase need it.
        if args.redis_url is None and (args.mode != "lean" or args.latency_rate > 0):
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


def _bench_mode(
    args: argparse.Namespace,
    out: Path,
    mode: str,
    engine: str,
    *,
    topic: str,
    run_id: str,
    truth: dict[str, Any],
    catalogs: tuple[Path, Path],
    window: tuple[str, str],
) -> dict[str, Any]:
    """Run and check the flow in ``mode`` on ``engine``; its figures (the caller adds the ratio)."""
    label = _label(mode, engine)
    config = _flow_config(
        out,
        brokers=args.brokers,
        topic=topic,
        redis_url=args.redis_url,
        # Each flow its own store: the engines share the layout, so a second full flow
        # on the first one's claims would find every event already counted.
        prefix=f"bench-{run_id}-{label}",
        workers=args.workers,
        batch_size=args.batch_size,
        catalogs=catalogs,
        window=window,
        mode=mode,
        name=label,
        engine=engine,
    )
    flow = run_flow(config, out, label, args.processes)
    checks = Checks()
    consumed = 0
    processing: dict[str, Any] = {"seconds": None, "events_per_s": None}
    stages: dict[str, dict[str, float]] = {}
    if flow.summary is None:
        checks.failures.append(f"flow exited {flow.exit_code}:\n{flow.stderr_tail}")
    else:
        consumed = flow.summary["run"]["consumed"]
        processing = flow.summary.get("processing") or processing
        stages = flow.summary.get("stages", {})
        check_summary(flow.summary, truth, checks)
        if mode == "full":
            run_reconcile(config, out, truth, checks)
    rate = processing["events_per_s"]
    _done(
        f"{label}: {consumed:,} messages, {_rate(rate)} from first message to last write "
        f"(wall {flow.wall_seconds:.1f} s), peak RSS {flow.peak_rss_bytes / 2**20:,.0f} MiB"
    )
    return {
        "flow": {
            "exit_code": flow.exit_code,
            "events": consumed,
            "seconds": processing["seconds"],
            "events_per_s": rate,
            "wall_seconds": flow.wall_seconds,
            "peak_rss_bytes": flow.peak_rss_bytes,
        },
        "stages": stage_table(
            stages, processing["seconds"], consumed, threads=args.workers * args.processes
        ),
        "checks": {
            "passed": checks.passed,
            "compared": checks.compared,
            "reconcile_windows": checks.reconcile_windows,
            "failures": checks.failures,
        },
    }


def _raw_pass(args: argparse.Namespace, topic: str, partitions: int, when: str) -> dict[str, Any]:
    _progress(f"raw ceiling ({when}): consuming the topic ...")
    run = raw_ceiling(args.brokers, topic, partitions)
    _done(
        f"raw ceiling ({when}): {run['events']:,} messages in {run['seconds']:.2f} s "
        f"= {run['events_per_s']:,.0f} events/s"
    )
    return {**run, "when": when}


def bench(args: argparse.Namespace, out: Path) -> int:
    """The benchmark proper, with brokers and Redis in ``args``; the exit code."""
    load = load_module()
    assert load is not None, "checked by main()"
    workload = load.WORKLOADS[args.workload]
    started = datetime.now(UTC).isoformat(timespec="seconds")
    run_id = uuid.uuid4().hex[:8]
    topic = f"meterwax-bench-{run_id}"
    spec = load.spec_from_args(args, f"bench/{run_id}")
    generator = load.workload_generator(args, spec, args.meters)
    partitions = args.partitions or workload.partitions
    catalogs = (args.meters or workload.meters, args.pricing or workload.pricing)
    window = (workload.window_size, workload.grace)
    _progress(f"preloading {spec.events:,} {workload.name} events into {topic!r} ...")
    produced = load.write_kafka(
        generator.payloads(), args.brokers, topic, partitions=partitions, rate=args.rate
    )
    truth = generator.truth.to_json(spec)
    load.write_truth(out / "truth.json", truth)
    if produced.failed:
        raise BenchError(f"{produced.failed} messages not delivered: {produced.first_error}")
    preload_rate = produced.sent / produced.seconds if produced.seconds else 0.0
    _done(f"preloaded {produced.sent:,} messages in {produced.seconds:.1f} s")

    raw_runs = [_raw_pass(args, topic, partitions, "before")]
    results = {
        _label(mode, engine): _bench_mode(
            args, out, mode, engine, topic=topic, run_id=run_id, truth=truth,
            catalogs=catalogs, window=window,
        )
        for mode, engine in _runs(args)
    }  # fmt: skip
    raw_runs.append(_raw_pass(args, topic, partitions, "after"))
    raw = ceiling(raw_runs)
    for result in results.values():
        rate = result["flow"]["events_per_s"]
        result["ratio"] = rate / raw["events_per_s"] if rate and raw["events_per_s"] else 0.0
    passed = all(result["checks"]["passed"] for result in results.values())
    report: dict[str, Any] = {
        "started": started,
        "command": "meterwax " + shlex.join(sys.argv[1:]),
        "out": str(out),
        "workload": {
            "name": workload.name,
            "summary": workload.summary,
            "meters": str(catalogs[0]),
            "pricing": str(catalogs[1]),
            "window": window[0],
            "grace": window[1],
        },
        "load": {**truth["spec"], "messages": truth["messages"]},
        "partitions": partitions,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "processes": args.processes,
        "topic": topic,
        "preload_events_per_s": preload_rate,
        "raw_ceiling": raw,
        "modes": results,
        "checks": {"passed": passed},
    }
    if args.latency_rate > 0 and passed:
        report["latency"] = _latency_phase(
            args, out, load, spec, run_id, catalogs=catalogs, window=window
        )
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    bars = [("raw ceiling", raw["events_per_s"])]
    bars += [(f"meterwax {m}", r["flow"]["events_per_s"] or 0.0) for m, r in results.items()]
    latency = report.get("latency", {}).get("latency_ms")
    try:
        from benchmarks.chart import render_png  # noqa: PLC0415 — an optional extra
    except ImportError:
        _done("no chart.png: install the bench extra (pip install 'meterwax[bench]')")
    else:
        render_png(out / "chart.png", bars, latency)
    figures = " | ".join(
        f"{mode} {_rate(r['flow']['events_per_s'])} ratio {r['ratio']:.3f}"
        for mode, r in results.items()
    )
    print(
        f"raw ceiling {raw['events_per_s']:,.0f} ev/s (spread {raw['spread']:.1%}) | {figures} | "
        f"ground truth {'PASSED' if passed else 'FAILED'} | report in {out}"
    )
    if not passed:
        print("meterwax bench: FAILED, the flow's output differs:", file=sys.stderr)
        for mode, result in results.items():
            for failure in result["checks"]["failures"][:50]:
                print(f"  {mode}: {failure}", file=sys.stderr)
        return FAILED
    return 0


def _latency_phase(
    args: argparse.Namespace,
    out: Path,
    load: ModuleType,
    spec: Any,
    run_id: str,
    *,
    catalogs: tuple[Path, Path],
    window: tuple[str, str],
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
        batch_size=args.batch_size,
        catalogs=catalogs,
        window=window,
        mode="full",
        name="latency",
        # The faster engine when both ran: latency is the figure a deployment gets.
        engine="python" if args.engine == "python" else "native",
    )
    _progress(f"latency: producing {events:,} events at {args.latency_rate:,.0f}/s ...")
    result = measure_latency(
        load,
        replace(spec, events=events, seed=spec.seed + 1),
        brokers=args.brokers,
        topic=topic,
        partitions=args.partitions or load.WORKLOADS[args.workload].partitions,
        rate=args.latency_rate,
        config=config,
        workdir=out,
        metrics_port=free_port(),
    )
    _done(f"latency: {latency_summary(result)}")
    return result


def _runs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (mode, engine) flows to run, in order."""
    modes = MODES if args.mode == "both" else (args.mode,)
    engines = ENGINES if args.engine == "both" else (args.engine,)
    return [(mode, engine) for mode in modes for engine in engines]


def _label(mode: str, engine: str) -> str:
    """How a flow is named in the report: ``lean``, ``full``, ``lean-native``."""
    return mode if engine == "python" else f"{mode}-{engine}"


def _check_inputs(load: ModuleType, args: argparse.Namespace) -> None:
    """Raise ValueError or ConfigError (one line each) for a bad spec or catalog."""
    load.workload_generator(args, load.spec_from_args(args), args.meters)
    workload = load.WORKLOADS[args.workload]
    meters = load_meter_catalog(args.meters or workload.meters)
    load_pricing_catalog(args.pricing or workload.pricing, meters)


def _earlier_run(out: Path) -> str:
    """What in ``out`` an earlier bench run left ('' if nothing)."""
    if not out.is_dir():
        return ""
    names = sorted(p.name for p in out.iterdir())
    return ", ".join(n for n in names if n.startswith("ch-") or n == "truth.json")


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax bench``: 0 when the flow matches the ground truth, 1 if not, 2 on set-up."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = (args.out or REPO / "benchmarks" / "out" / stamp).resolve()
    load = load_module()
    if load is None:
        print("meterwax bench: needs benchmarks/ from a clone of the repository", file=sys.stderr)
        return SETUP_FAILED
    try:
        _check_inputs(load, args)
    except (ValueError, ConfigError) as exc:
        print(f"meterwax bench: {exc}", file=sys.stderr)
        return SETUP_FAILED
    held = _earlier_run(out)
    if held:
        # Its stores would start with the earlier run's windows in them.
        print(
            f"meterwax bench: --out {out} already holds a bench run ({held}); "
            "give a new or empty directory",
            file=sys.stderr,
        )
        return SETUP_FAILED
    out.mkdir(parents=True, exist_ok=True)
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
