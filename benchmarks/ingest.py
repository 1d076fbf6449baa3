"""Ingest benchmark: batches of CloudEvents posted to ``POST /v1/events`` while the flow runs.

It starts a Tansu broker, redis-server, a ``meterwax run`` tailing the input
topic (Redis dedup, chDB) and ``meterwax api serve`` producing to it (as
deployed: the API in its own process; ``--embedded`` serves it from the run's
process instead, with ``--api-port``), then posts pre-built batches (100 and
1,000 events by default) from concurrent clients. It reports, per batch size,
the events per second the API acknowledged (each one delivered to Kafka with
acks=all) and the request latency at the API (p50, p99), while the flow
consumes them.

    python -m benchmarks.ingest                          # batches of 100 and 1,000
    python -m benchmarks.ingest --batch 1000 --events 200000 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from confluent_kafka.admin import AdminClient

from config.clock import SYSTEM_CLOCK
from config.display import iso_utc
from sinks.kafka_topics import ensure_topic
from sinks.local_services import RunningService, start_redis, start_tansu, stop

METERWAX = [sys.executable, "-m", "cli.main"]
TENANTS = ("acme", "globex", "initech", "umbrella")
BATCH = "application/cloudevents-batch+json"
TOPIC = "usage-events"
_STARTUP_S = 60.0


@dataclass(frozen=True)
class IngestResult:
    """One batch size's figures."""

    batch: int
    events: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def events_per_s(self) -> float:
        """Events acknowledged per second, over the whole load."""
        return self.events / self.seconds


def batches(count: int, size: int, run: str) -> list[bytes]:
    """``count`` request bodies of ``size`` valid, distinct events each (event time: now)."""
    now_ms = SYSTEM_CLOCK.now_ms()
    bodies = []
    for b in range(count):
        events = [
            {
                "specversion": "1.0",
                "id": f"{run}-{b}-{n}",
                "source": "bench/ingest",
                "type": "llm.completion",
                "subject": TENANTS[n % len(TENANTS)],
                "time": iso_utc(now_ms + n),
                "data": {"tokens": 100 + n % 900, "model": ("small", "large")[n % 2]},
            }
            for n in range(size)
        ]
        bodies.append(orjson.dumps(events))
    return bodies


async def post_all(url: str, key: str, bodies: Sequence[bytes], concurrency: int) -> list[float]:
    """Post every body with ``concurrency`` clients; each request's latency in ms."""
    latencies: list[float] = []
    queue = list(reversed(bodies))
    headers = {"Content-Type": BATCH, "Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                response = await client.post("/v1/events", content=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 202 or response.json()["rejected"]:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(url: str, key: str, batch: int, events: int, concurrency: int) -> IngestResult:
    """Post ``events`` events in batches of ``batch``; the figures."""
    bodies = batches(max(1, events // batch), batch, f"b{batch}-{time.time_ns()}")
    # A warm-up request: connections, producer metadata.
    asyncio.run(post_all(url, key, batches(1, batch, f"warm{batch}-{time.time_ns()}"), 1))
    started = time.perf_counter()
    latencies = asyncio.run(post_all(url, key, bodies, concurrency))
    seconds = time.perf_counter() - started
    return IngestResult(
        batch, len(bodies) * batch, seconds, quantile(latencies, 0.5), quantile(latencies, 0.99)
    )


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [*METERWAX, *argv], stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL
        )


def _wait_url(process: subprocess.Popen[bytes], log: Path, pattern: str) -> str:
    deadline = time.monotonic() + _STARTUP_S
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"did not start:\n{log.read_text()[-2000:]}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print one line per batch size (or JSON with --json)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__)
    parser.add_argument("--batch", type=int, action="append", help="events per request")
    parser.add_argument("--events", type=int, default=100_000, help="events per batch size")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--partitions", type=int, default=4, help="input topic partitions")
    parser.add_argument(
        "--embedded", action="store_true", help="serve the API from the run's process"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    sizes = args.batch or [100, 1000]
    workdir = Path(tempfile.mkdtemp(prefix="meterwax-ingest-"))
    services: list[RunningService] = []
    processes: list[subprocess.Popen[bytes]] = []
    try:
        kafka = start_tansu(workdir / "kafka")
        services.append(kafka)
        redis = start_redis(workdir / "redis")
        services.append(redis)
        ensure_topic(AdminClient({"bootstrap.servers": kafka.address}), TOPIC, args.partitions, 1)
        keys = workdir / "keys.yaml"
        created = subprocess.run(
            [*METERWAX, "api", "keys", "create", "--all-tenants", "--scope", "ingest",
             "--keys-file", str(keys)],
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
        key = created.stdout.splitlines()[-1]
        common = ["--brokers", kafka.address, "--topic", TOPIC]
        run = ["run", "--input", "kafka", *common, "--redis-url", f"redis://{redis.address}/0"]
        run += ["--dsn", f"chdb://{workdir / 'chdb'}", "--no-progress", "--json"]
        # The API's own process reads a chDB directory of its own: the run holds the other.
        api = ["api", "serve", "--port", "0", "--keys-file", str(keys), *common]
        api += ["--dsn", f"chdb://{workdir / 'api-chdb'}"]
        if args.embedded:
            run += ["--api-port", "0", "--api-keys-file", str(keys)]
        processes.append(_spawn(run, workdir / "run.err"))
        if args.embedded:
            url = _wait_url(processes[-1], workdir / "run.err", r"API on (http://\S+)")
        else:
            processes.append(_spawn(api, workdir / "api.err"))
            url = _wait_url(processes[-1], workdir / "api.err", r"listening on (http://\S+)")
        results = [measure(url, key, size, args.events, args.concurrency) for size in sizes]
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        for service in services:
            stop(service.pid)
    if args.json:
        print(json.dumps([{**r.__dict__, "events_per_s": r.events_per_s} for r in results]))
    else:
        for r in results:
            print(
                f"batch {r.batch:>5}: {r.events:,} events in {r.seconds:.2f} s = "
                f"{r.events_per_s:,.0f} events/s into Kafka; latency at the API "
                f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms ({os.cpu_count()} cores)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
