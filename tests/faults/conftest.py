"""Fault-injection helpers: ``meterwax run`` as a subprocess that tests kill, restart and starve.

Each test gets a ``FaultRig``: its own topic, dead-letter topic, Redis key
prefix, chDB path (``chdb://{workdir}/ch``: the pytest process already holds
the suite's chDB path, and chDB allows one path per process), catalogs and a
config file. Results come back through the subprocesses: the ``--json``
summary of a run, and the exit code and JSON of ``meterwax reconcile``.

Progress of a run is read from its Bytewax recovery database (the input
offsets of the last committed snapshot), so a test can kill a run mid-stream
without the run printing anything.

Environment:

* ``METERWAX_FAULT_EVENTS``: scenario size. Unset: a CI default (``CI_EVENTS``,
  60,000, or what a test module names) that keeps every test under a minute;
  ``full``: ``FULL_EVENTS`` (200,000); an integer: that many.
* ``METERWAX_FAULT_SEED``: seed of the random fault moments (printed by every
  test that uses them, so a failure can be replayed).

A rig made with ``now_ms`` runs every command with the hidden
``--test-clock-offset-ms`` flag: their clock reads ``now_ms`` when the rig is
made and runs on from there, across restarts, whatever today's date is.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from tests.dataflows.conftest import METERS_YAML, PRICING_YAML
from tests.dataflows.scenario import MINUTE, Scenario

EVENTS_ENV = "METERWAX_FAULT_EVENTS"
SEED_ENV = "METERWAX_FAULT_SEED"
CI_EVENTS = 60_000
FULL_EVENTS = 200_000

METERWAX = [sys.executable, "-m", "cli.main"]
SNAPSHOT_INTERVAL_S = 0.5
# Generous bounds: a hung run fails the test instead of hanging CI.
RUN_TIMEOUT_S = 180.0
RECONCILE_TIMEOUT_S = 60.0

HOUR = 60 * MINUTE

Totals = dict[tuple[str, str], tuple[Decimal, Decimal]]


def fault_events(ci_default: int = CI_EVENTS) -> int:
    """Scenario size from ``METERWAX_FAULT_EVENTS``; ``ci_default`` when it is unset."""
    text = os.environ.get(EVENTS_ENV, "").strip().lower()
    if not text:
        return ci_default
    if text == "full":
        return FULL_EVENTS
    return int(text)


def iso(ms: int) -> str:
    """RFC 3339 text of an epoch-milliseconds instant."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def event_ms(event: Mapping[str, object]) -> int:
    """Event time of a CloudEvent dict, in epoch milliseconds."""
    return int(datetime.fromisoformat(str(event["time"])).timestamp() * 1000)


def without_too_late(scenario: Scenario) -> Scenario:
    """The scenario minus its events that are hours late (``too_late`` with a 1 h horizon).

    For tests that set a long settlement horizon, where those events would be
    accepted; nothing else in the expectation depends on the horizon. (Retries
    of accepted events can be more than an hour behind too, in a large
    scenario: they stay, as duplicates.)
    """
    accepted_ids = {event["id"] for event in scenario.accepted}
    kept: list[bytes] = []
    latest = 0
    for line in scenario.lines:
        try:
            event = orjson.loads(line)
            time_ms = event_ms(event)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            kept.append(line)
            continue
        if time_ms < latest - HOUR and event["id"] not in accepted_ids:
            continue
        latest = max(latest, time_ms)
        kept.append(line)
    assert len(scenario.lines) - len(kept) == scenario.rejected["too_late"]
    rejected = scenario.rejected.copy()
    del rejected["too_late"]
    return Scenario(kept, scenario.accepted, scenario.duplicates, rejected)


def produce(
    brokers: str,
    topic: str,
    lines: Sequence[bytes],
    partition_of: Callable[[int], int] | None = None,
) -> None:
    """Produce ``lines`` in order: keyed by tenant, as platforms do, or to ``partition_of(i)``."""
    producer = Producer(
        {"bootstrap.servers": brokers, "linger.ms": 5, "queue.buffering.max.messages": 500_000}
    )
    for i, line in enumerate(lines):
        options: dict[str, Any] = {}
        if partition_of is not None:
            options["partition"] = partition_of(i)
        else:
            with suppress(orjson.JSONDecodeError, AttributeError):
                options["key"] = str(orjson.loads(line).get("subject", "")).encode()
        while True:
            try:
                producer.produce(topic, value=line, **options)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.05)
    assert producer.flush(60) == 0, "messages not delivered within 60 s"


def committed_position(recovery_dir: Path) -> int | None:
    """Messages consumed as of the last committed snapshot (summed over input partitions).

    None before the first commit, or while the database cannot be read. Recovery
    databases are SQLite in WAL mode, so reading never blocks the running flow.
    """
    total: int | None = None
    for db in sorted(recovery_dir.glob("part-*.sqlite3")):
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
                commit = conn.execute("SELECT max(commit_epoch) FROM commits").fetchone()[0]
                if commit is None:
                    continue
                rows = conn.execute(
                    """
                    SELECT ser_change FROM snaps AS s
                    WHERE step_id LIKE '%.read' AND snap_epoch = (
                        SELECT max(snap_epoch) FROM snaps
                        WHERE step_id = s.step_id AND state_key = s.state_key
                          AND snap_epoch <= ?)
                    """,
                    (commit,),
                ).fetchall()
        except sqlite3.Error:
            return None
        total = total or 0
        for (blob,) in rows:
            if blob is not None:
                # The Kafka source's state is the next offset to read (negative: none yet).
                total += max(0, int(pickle.loads(blob)))
    return total


@dataclass(frozen=True)
class RunSummary:
    """The ``--json`` summary of one ``meterwax run``."""

    data: dict[str, Any]

    @property
    def run(self) -> dict[str, Any]:
        """This run's counts."""
        counts: dict[str, Any] = self.data["run"]
        return counts

    @property
    def totals(self) -> Totals:
        """Usage now in ClickHouse per (tenant, meter): exact quantity and amount."""
        return {
            (row["tenant"], row["meter"]): (Decimal(row["quantity"]), Decimal(row["amount"]))
            for row in self.data["usage"]
        }


@dataclass
class MeterwaxProcess:
    """One ``meterwax run`` subprocess; its output goes to files (no pipe can fill up)."""

    label: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.popen.poll() is None

    def kill(self) -> bool:
        """SIGKILL (a crash: no flush, no clean-up); False if it had already exited."""
        if not self.alive():
            return False
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)
        return True

    def stderr(self) -> str:
        """Everything it wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def summary(self, timeout_s: float = RUN_TIMEOUT_S) -> RunSummary:
        """Wait for a clean exit and parse the summary; fail with its stderr otherwise."""
        try:
            code = self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.label}: no exit within {timeout_s} s\n{self.stderr()[-3000:]}")
        if code != 0:
            pytest.fail(f"{self.label}: exit code {code}\n{self.stderr()[-3000:]}")
        return RunSummary(json.loads(self.stdout_path.read_text()))


@dataclass
class FaultRig:
    """What one fault test runs against: topics, Redis prefix, chDB path, config, processes."""

    workdir: Path
    brokers: str
    topic: str
    config: Path
    recovery_dir: Path
    # Moves the clock of every command the rig runs (None: the host's clock).
    clock_offset_ms: int | None = None
    processes: list[MeterwaxProcess] = field(default_factory=list)

    def _meterwax(self) -> list[str]:
        if self.clock_offset_ms is None:
            return METERWAX
        return [*METERWAX, "--test-clock-offset-ms", str(self.clock_offset_ms)]

    def start(self, label: str, *args: str, tail: bool = False) -> MeterwaxProcess:
        """Start ``meterwax run`` with the rig's config (``--no-tail`` unless ``tail``)."""
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        stdout_path = logs / f"{label}.out"
        stderr_path = logs / f"{label}.err"
        argv = [*self._meterwax(), "run", "--config", str(self.config), "--json", "--no-progress"]
        if not tail:
            argv.append("--no-tail")
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            popen = subprocess.Popen(
                [*argv, *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=self.workdir
            )
        process = MeterwaxProcess(label, popen, stdout_path, stderr_path)
        self.processes.append(process)
        return process

    def run(self, label: str, *args: str) -> RunSummary:
        """A ``--no-tail`` run to the end of the topic; its summary."""
        return self.start(label, *args).summary()

    def committed(self, recovery_dir: Path | None = None) -> int | None:
        """See ``committed_position``; for the rig's recovery directory by default."""
        return committed_position(recovery_dir or self.recovery_dir)

    def wait_committed(
        self,
        process: MeterwaxProcess,
        at_least: int,
        timeout_s: float = RUN_TIMEOUT_S,
    ) -> int:
        """Poll until a committed snapshot covers ``at_least`` messages; that count.

        Fails if ``process`` exits first or the time is up.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            position = self.committed()
            if position is not None and position >= at_least:
                return position
            if not process.alive():
                pytest.fail(
                    f"{process.label} exited (code {process.popen.returncode}) before committing "
                    f"{at_least} messages (at {position})\n{process.stderr()[-3000:]}"
                )
            time.sleep(0.02)
        pytest.fail(f"{process.label}: {at_least} messages not committed within {timeout_s} s")

    def reconcile(self, start_ms: int, end_ms: int) -> tuple[int, dict[str, Any]]:
        """``meterwax reconcile`` over [start, end): exit code and JSON result."""
        completed = subprocess.run(
            [
                *self._meterwax(),
                "reconcile",
                *("--from", iso(start_ms), "--to", iso(end_ms)),
                *("--config", str(self.config), "--json"),
            ],
            capture_output=True,
            text=True,
            timeout=RECONCILE_TIMEOUT_S,
            cwd=self.workdir,
            check=False,
        )
        if completed.returncode not in (0, 1):
            pytest.fail(f"reconcile: exit code {completed.returncode}\n{completed.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(completed.stdout)
        return completed.returncode, result

    def close(self) -> None:
        """Kill whatever still runs (a failed test must not leave flows behind)."""
        for process in self.processes:
            process.kill()


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def make_rig(
    tmp_path: Path,
    kafka_brokers: str,
    new_topic: Callable[..., str],
    redis_url: str,
) -> Iterator[Callable[..., FaultRig]]:
    """``make_rig(partitions=3, redis_url_override=None, settings={...}, now_ms=None)``: a rig.

    ``settings`` is merged into the defaults: Kafka input from a new topic,
    Redis on the session server (or ``redis_url_override``) under a new key
    prefix, recovery every 0.5 s in ``{workdir}/recovery``, chDB in
    ``{workdir}/ch``. With ``now_ms`` its clock starts there. Its processes are
    killed at teardown.
    """
    rigs: list[FaultRig] = []

    def make(
        partitions: int = 3,
        redis_url_override: str | None = None,
        settings: Mapping[str, Any] | None = None,
        now_ms: int | None = None,
    ) -> FaultRig:
        workdir = tmp_path / f"rig{len(rigs)}"
        workdir.mkdir()
        (workdir / "meters.yaml").write_text(METERS_YAML)
        (workdir / "pricing.yaml").write_text(PRICING_YAML)
        topic = new_topic(partitions=partitions, prefix="faults")
        recovery = workdir / "recovery"
        base: dict[str, Any] = {
            "input": {"kind": "kafka"},
            "catalogs": {
                "meters": str(workdir / "meters.yaml"),
                "pricing": str(workdir / "pricing.yaml"),
            },
            "kafka": {
                "brokers": kafka_brokers,
                "topics": [topic],
                "dead_letter_topic": new_topic(prefix="faults-dead-letters"),
            },
            "redis": {
                "url": redis_url_override or redis_url,
                "key_prefix": f"faults-{uuid.uuid4().hex[:12]}",
            },
            "clickhouse": {"dsn": f"chdb://{workdir / 'ch'}", "database": "faults"},
            "recovery": {
                "directory": str(recovery),
                "snapshot_interval": f"{int(SNAPSHOT_INTERVAL_S * 1000)}ms",
            },
        }
        config = workdir / "meterwax.json"
        config.write_text(json.dumps(_merge(base, settings or {}), indent=2))
        offset = None if now_ms is None else now_ms - time.time_ns() // 1_000_000
        rig = FaultRig(workdir, kafka_brokers, topic, config, recovery, offset)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def fault_rng() -> random.Random:
    """A seeded RNG for fault moments; the seed is printed (shown when the test fails)."""
    text = os.environ.get(SEED_ENV)
    seed = int(text) if text else random.SystemRandom().randrange(2**32)
    print(f"fault RNG seed: {seed} (replay with {SEED_ENV}={seed})")
    return random.Random(seed)


def scenario_range(events: Sequence[Mapping[str, object]]) -> tuple[int, int]:
    """[start, end) covering every event's window: what reconcile should compare."""
    times = [event_ms(event) for event in events]
    return min(times) - MINUTE, max(times) + 2 * MINUTE
