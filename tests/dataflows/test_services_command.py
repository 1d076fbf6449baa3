"""``meterwax services start|stop|status`` as a user runs it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from cli.main import main
from cli.services_command import STATE_FILE
from sinks.local_services import free_port, port_in_use, stop


def meterwax(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, as from a shell."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def recorded_pids(workdir: Path) -> dict[str, int]:
    """Pids in the state file, by service."""
    state = json.loads((workdir / STATE_FILE).read_text())
    return {name: fields["pid"] for name, fields in state["services"].items()}


@pytest.fixture
def services_dir(tmp_path: Path) -> Iterator[Path]:
    """A state directory whose services are stopped after the test, even when it fails."""
    workdir = tmp_path / "services"
    yield workdir
    main(["services", "stop", "--dir", str(workdir)])


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.integration
def test_start_status_restart_stop_from_a_shell(services_dir: Path) -> None:
    kafka_port, redis_port = free_port(), free_port()
    where = ("--dir", str(services_dir))
    ports = ("--kafka-port", str(kafka_port), "--redis-port", str(redis_port))

    started = meterwax("services", "start", *where, *ports)

    assert started.returncode == 0, started.stderr
    flags = f"--brokers 127.0.0.1:{kafka_port} --redis-url redis://127.0.0.1:{redis_port}/0"
    assert flags in started.stdout
    # The command has exited; the services it started keep running.
    topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}"}).list_topics(timeout=10)
    assert topics.brokers
    assert redis.Redis.from_url(f"redis://127.0.0.1:{redis_port}/0").ping()
    pids = recorded_pids(services_dir)

    status = meterwax("services", "status", *where)
    assert status.returncode == 0
    assert f"kafka  running  127.0.0.1:{kafka_port}" in status.stdout
    assert f"redis  running  127.0.0.1:{redis_port}" in status.stdout

    again = meterwax("services", "start", *where, *ports)
    assert again.returncode == 0, again.stderr
    assert "kafka is already running" in again.stdout
    assert "redis is already running" in again.stdout
    assert recorded_pids(services_dir) == pids

    stopped = meterwax("services", "stop", *where)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped kafka" in stopped.stdout
    assert "stopped redis" in stopped.stdout
    assert not (services_dir / STATE_FILE).exists()
    assert not port_in_use(kafka_port)
    assert not port_in_use(redis_port)

    after = meterwax("services", "status", *where)
    assert after.returncode == 1
    assert "not running" in after.stdout


@pytest.mark.integration
def test_status_detects_a_stale_pid_and_start_restarts_only_that_service(
    services_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--dir", str(services_dir)]
    ports = ["--kafka-port", str(free_port()), "--redis-port", str(free_port())]
    assert main(["services", "start", *where, *ports]) == 0
    pids = recorded_pids(services_dir)
    stop(pids["redis"])
    capsys.readouterr()

    assert main(["services", "status", *where]) == 1
    out = capsys.readouterr().out
    assert f"pid {pids['redis']} is not running" in out
    assert "kafka  running" in out

    assert main(["services", "start", *where, *ports]) == 0
    restarted = recorded_pids(services_dir)
    assert restarted["kafka"] == pids["kafka"]
    assert restarted["redis"] != pids["redis"]
    assert main(["services", "status", *where]) == 0


@pytest.mark.parametrize("busy_flag", ["--kafka-port", "--redis-port"])
def test_port_in_use_exits_2_naming_the_flag_and_starts_nothing(
    services_dir: Path, listening_port: int, busy_flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = {"--kafka-port": free_port(), "--redis-port": free_port(), busy_flag: listening_port}

    code = main(
        ["services", "start", "--dir", str(services_dir)]
        + [part for flag, port in ports.items() for part in (flag, str(port))]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert f"port {listening_port} on 127.0.0.1 is in use" in err
    assert busy_flag in err
    assert "Traceback" not in err
    assert not (services_dir / STATE_FILE).exists()
    assert not any(port_in_use(port) for port in ports.values() if port != listening_port)


def test_missing_redis_server_exits_2_with_the_install_command(
    services_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    kafka_port = free_port()

    code = main(["services", "start", "--dir", str(services_dir), "--kafka-port", str(kafka_port)])

    err = capsys.readouterr().err
    assert code == 2
    assert "redis-server is not installed" in err
    assert "apt-get install -y redis-server" in err
    assert not port_in_use(kafka_port)


def test_same_port_for_both_is_refused(
    services_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(free_port())
    code = main(
        [
            "services",
            "start",
            "--dir",
            str(services_dir),
            "--kafka-port",
            port,
            "--redis-port",
            port,
        ]
    )
    assert code == 2
    assert "--kafka-port and --redis-port are the same port" in capsys.readouterr().err


def test_stop_without_services_is_a_no_op(
    services_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["services", "stop", "--dir", str(services_dir)]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_unreadable_state_file_exits_2(
    services_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    services_dir.mkdir()
    (services_dir / STATE_FILE).write_text("{not json")
    assert main(["services", "status", "--dir", str(services_dir)]) == 2
    assert "is unreadable" in capsys.readouterr().err
    (services_dir / STATE_FILE).unlink()
