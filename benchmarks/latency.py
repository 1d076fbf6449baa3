"""The rate-limited phase of ``meterwax bench``: latency from arrival to its effects.

The flow runs tailing a new topic with its metrics endpoint on; events are
produced at a steady rate while it runs, each stamped by the producer (Kafka
CreateTime) as it is sent. The flow observes, for a sample of events, the time
from that stamp to the moment its live counter is written to Redis and its row
to ClickHouse (``meterwax_event_latency_seconds``); the quantiles come from
that histogram, scraped once every event has been consumed.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from dataflows.metrics import latency_quantiles_ms
from sinks.kafka_topics import ensure_topic

READY_TIMEOUT_S = 120.0
# After the last event is produced, how long the flow may take to consume the rest.
DRAIN_TIMEOUT_S = 600.0
# The last live update waits for the publish interval; let it land before scraping.
SETTLE_S = 2.0


class LatencyError(RuntimeError):
    """The latency phase could not run; the message says why."""


@dataclass
class Scrape:
    """What the flow's endpoint said."""

    consumed: float
    latency_ms: dict[str, dict[str, float | None]]


def scrape(port: int) -> Scrape:
    """Read the flow's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    consumed = sum(s.value for s in samples if s.name == "meterwax_events_consumed_total")
    return Scrape(consumed, latency_quantiles_ms(samples))


def _wait_ready(port: int, popen: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise LatencyError(f"the flow exited {popen.returncode} before it was ready")
        try:
            scrape(port)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise LatencyError(f"the flow's metrics endpoint did not answer in {READY_TIMEOUT_S:.0f} s")


def measure_latency(
    load: ModuleType,
    spec: Any,
    *,
    brokers: str,
    topic: str,
    partitions: int,
    rate: float,
    config: Path,
    workdir: Path,
    metrics_port: int,
) -> dict[str, Any]:
    """Run the flow on ``topic`` while producing ``spec``'s events at ``rate``; the figures."""
    argv = [
        *(sys.executable, "-m", "cli.main", "run", "--config", str(config)),
        *("--no-progress", "--metrics-port", str(metrics_port)),
    ]
    # The flow refuses a topic that does not exist: create it before starting it.
    ensure_topic(AdminClient({"bootstrap.servers": brokers}), topic, partitions, 1)
    with (workdir / "latency.out").open("wb") as out, (workdir / "latency.err").open("wb") as err:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=workdir
        )
    try:
        _wait_ready(metrics_port, popen)
        generator = load.LoadGenerator(spec)
        started = time.monotonic()
        produced = load.write_kafka(
            generator.payloads(), brokers, topic, partitions=partitions, rate=rate
        )
        produced_s = time.monotonic() - started
        if produced.failed:
            raise LatencyError(f"{produced.failed} messages not delivered: {produced.first_error}")
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        seen = scrape(metrics_port)
        while seen.consumed < produced.sent:
            if popen.poll() is not None:
                raise LatencyError(f"the flow exited {popen.returncode} while consuming")
            if time.monotonic() > deadline:
                raise LatencyError(
                    f"the flow consumed {seen.consumed:,.0f} of {produced.sent:,} messages "
                    f"within {DRAIN_TIMEOUT_S:.0f} s of the last one being produced"
                )
            time.sleep(0.2)
            seen = scrape(metrics_port)
        drained_s = time.monotonic() - started
        time.sleep(SETTLE_S)
        seen = scrape(metrics_port)
    finally:
        popen.terminate()
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    return {
        "rate": rate,
        "messages": produced.sent,
        "produce_seconds": produced_s,
        "produced_per_s": produced.sent / produced_s if produced_s else 0.0,
        # How long after the start of production the flow had consumed everything:
        # close to produce_seconds when it kept up, longer when a backlog built up.
        "consumed_all_after_s": drained_s,
        "kept_up": drained_s <= produced_s + 5.0,
        "latency_ms": seen.latency_ms,
    }


def latency_summary(result: dict[str, Any]) -> str:
    """One line for the console."""
    parts = [f"{result['produced_per_s']:,.0f} ev/s produced"]
    for stage, q in result["latency_ms"].items():
        parts.append(f"{stage} p50 {q['p50']} ms p99 {q['p99']} ms")
    parts.append("kept up" if result["kept_up"] else "fell behind")
    return " | ".join(parts)
