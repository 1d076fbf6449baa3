"""``meterwax services start|stop|status``: a local broker and redis-server in the background.

For trying meterwax on one machine: Tansu (a Kafka-protocol broker, in-memory
storage) and redis-server run detached from the command that started them.
What runs where is kept in a JSON state file under ``--dir``, so ``stop`` and
``status`` work from any later shell.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from sinks.local_services import (
    RunningService,
    ServiceError,
    is_running,
    port_in_use,
    redis_binary,
    start_redis,
    start_tansu,
    stop,
    tansu_binary,
)

DEFAULT_DIR = Path("data/services")
STATE_FILE = "services.json"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServiceKind:
    """One kind of service: how to find its binary, start it, and which flag sets its port."""

    name: str
    label: str
    port_flag: str
    default_port: int
    binary: Callable[[], Path]
    start: Callable[[Path, int, str], RunningService]


KINDS = (
    ServiceKind(
        "kafka",
        "Kafka-protocol broker (Tansu, in memory)",
        "--kafka-port",
        9092,
        tansu_binary,
        start_tansu,
    ),
    ServiceKind("redis", "redis-server", "--redis-port", 6379, redis_binary, start_redis),
)


@dataclass(frozen=True)
class ServiceRecord:
    """A started service as kept in the state file."""

    name: str
    program: str
    pid: int
    host: str
    port: int
    log: str

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def running(self) -> bool:
        """Whether the recorded process still runs (a recycled pid does not count)."""
        return is_running(self.pid, self.program)


def read_state(workdir: Path) -> dict[str, ServiceRecord]:
    """The services recorded under ``workdir``; empty when none were started there."""
    path = workdir / STATE_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return {name: ServiceRecord(**fields) for name, fields in data["services"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServiceError(
            f"state file {path} is unreadable ({exc}); check that no service it lists still "
            "runs, then delete it"
        ) from None


def write_state(workdir: Path, records: Mapping[str, ServiceRecord]) -> None:
    """Record ``records`` under ``workdir``, replacing the file in one step."""
    path = workdir / STATE_FILE
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"services": {n: asdict(r) for n, r in records.items()}}))
    partial.replace(path)


def connection_flags(records: Mapping[str, ServiceRecord]) -> str:
    """The flags other meterwax commands need to use ``records``."""
    flags = []
    if "kafka" in records:
        flags.append(f"--brokers {records['kafka'].address}")
    if "redis" in records:
        flags.append(f"--redis-url redis://{records['redis'].address}/0")
    return " ".join(flags)


def port_problem(kinds: list[ServiceKind], ports: Mapping[str, int], host: str) -> str | None:
    """Why ``ports`` cannot be used for ``kinds``, naming the flag to change; None if they can."""
    if len({ports[kind.name] for kind in kinds}) < len(kinds):
        flags = " and ".join(kind.port_flag for kind in kinds)
        return f"{flags} are the same port; give each service its own"
    for kind in kinds:
        port = ports[kind.name]
        if port_in_use(port, host):
            return (
                f"port {port} on {host} is in use by another program, so {kind.name} cannot "
                f"listen there; pick a free port with {kind.port_flag} (or stop what uses it)"
            )
    return None


def start(workdir: Path, ports: Mapping[str, int], host: str = HOST) -> int:
    """Start whatever is not running yet; services already running are left alone."""
    workdir = workdir.resolve()
    records = {name: r for name, r in read_state(workdir).items() if r.running()}
    missing = [kind for kind in KINDS if kind.name not in records]
    for kind in KINDS:
        if kind.name in records:
            print(f"{kind.name} is already running on {records[kind.name].address}")
    if missing:
        # Find every binary and check every port first: a failed start starts nothing.
        programs = {kind.name: kind.binary().name for kind in missing}
        problem = port_problem(missing, ports, host)
        if problem:
            raise ServiceError(problem)
        started = _start_all(missing, programs, workdir, ports, host)
        records.update(started)
        write_state(workdir, records)
        for kind in missing:
            record = started[kind.name]
            print(f"started {kind.name}: {kind.label} on {record.address}, pid {record.pid}")
    print(f"logs and state: {workdir}")
    print(f"use: {connection_flags(records)}")
    print(f"stop with: meterwax services stop --dir {workdir}")
    return 0


def _start_all(
    kinds: list[ServiceKind],
    programs: Mapping[str, str],
    workdir: Path,
    ports: Mapping[str, int],
    host: str,
) -> dict[str, ServiceRecord]:
    started: dict[str, ServiceRecord] = {}
    try:
        for kind in kinds:
            service = kind.start(workdir, ports[kind.name], host)
            started[kind.name] = ServiceRecord(
                kind.name,
                programs[kind.name],
                service.pid,
                host,
                service.port,
                str(service.log_path),
            )
    except ServiceError:
        for record in started.values():
            stop(record.pid)
        raise
    return started


def stop_all(workdir: Path) -> int:
    """Stop the services recorded under ``workdir`` and forget them."""
    records = read_state(workdir)
    if not records:
        print(f"nothing to stop: no services recorded in {workdir}")
        return 0
    for record in records.values():
        if record.running():
            stop(record.pid)
            print(f"stopped {record.name} (pid {record.pid}, {record.address})")
        else:
            print(f"{record.name} was not running (stale pid {record.pid})")
    (workdir / STATE_FILE).unlink()
    return 0


def status(workdir: Path) -> int:
    """Say what runs where; 0 when every service runs, 1 otherwise."""
    records = read_state(workdir)
    if not records:
        print(f"not running: no services recorded in {workdir}")
        return 1
    healthy = True
    for kind in KINDS:
        record = records.get(kind.name)
        if record is None:
            healthy = False
            print(f"{kind.name:<6} not started")
        elif record.running():
            print(f"{kind.name:<6} running  {record.address}  pid {record.pid}  log {record.log}")
        else:
            healthy = False
            print(f"{kind.name:<6} stale    {record.address}  pid {record.pid} is not running")
    if healthy:
        print(f"use: {connection_flags(records)}")
    else:
        print(f"start what is missing with: meterwax services start --dir {workdir}")
    return 0 if healthy else 1


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return port


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``services start|stop|status`` to the ``meterwax`` parser."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"state file and logs (default: ./{DEFAULT_DIR})",
    )
    services = sub.add_parser(
        "services",
        help="start/stop a local Kafka-protocol broker and redis-server",
        description="Run a local Kafka-protocol broker (Tansu, in-memory: topics are gone "
        "after stop) and redis-server in the background, for trying meterwax on one machine.",
    )
    actions = services.add_subparsers(dest="action", required=True)
    start_parser = actions.add_parser("start", parents=[where], help="start both services")
    for kind in KINDS:
        start_parser.add_argument(
            kind.port_flag,
            dest=f"{kind.name}_port",
            type=_port,
            metavar="PORT",
            default=kind.default_port,
            help=f"{kind.name} port on {HOST} (default: {kind.default_port})",
        )
    actions.add_parser("stop", parents=[where], help="stop both services")
    actions.add_parser(
        "status", parents=[where], help="what runs where (exit 1 if not everything runs)"
    )


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax services <action>``; 2 with a message when a service cannot start."""
    try:
        if args.action == "start":
            ports = {kind.name: getattr(args, f"{kind.name}_port") for kind in KINDS}
            return start(args.dir, ports)
        if args.action == "stop":
            return stop_all(args.dir)
        return status(args.dir)
    except ServiceError as exc:
        print(f"meterwax services: {exc}", file=sys.stderr)
        return 2
