"""``meterwax api serve`` behind a readiness probe: it starts while its stores are down,
answers /readyz 503 naming each one that is down, and becomes ready by itself when they
come up."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from reports.usage import SourceUnavailable, UsageReports
from sinks.clickhouse import SinkError
from sinks.local_services import RunningService, free_port, start_redis, start_tansu, stop
from tests.api.conftest import Keys

pytestmark = pytest.mark.integration

METERWAX = [sys.executable, "-m", "cli.main"]
TIMEOUT_S = 60.0


@pytest.fixture
def services() -> Iterator[list[RunningService]]:
    started: list[RunningService] = []
    yield started
    for service in started:
        stop(service.pid)


def _readiness(url: str) -> tuple[int, dict[str, str]]:
    response = httpx.get(f"{url}/readyz", timeout=15)
    return response.status_code, response.json()["checks"]


def test_serve_starts_with_every_store_down_and_becomes_ready_as_they_come_up(
    tmp_path: Path,
    catalog_paths: tuple[Path, Path],
    keys_file: Path,
    keys: Keys,
    services: list[RunningService],
) -> None:
    kafka_port, redis_port, clickhouse_port = free_port(), free_port(), free_port()
    argv = [
        *METERWAX,
        *("api", "serve", "--port", "0", "--keys-file", str(keys_file)),
        *("--brokers", f"127.0.0.1:{kafka_port}", "--topic", "usage-events"),
        *("--redis-url", f"redis://127.0.0.1:{redis_port}/0"),
        *("--dsn", f"http://meterwax:s3cret@127.0.0.1:{clickhouse_port}"),
        *("--meters", str(catalog_paths[0]), "--pricing", str(catalog_paths[1])),
    ]
    err = tmp_path / "api.err"
    with err.open("wb") as stderr:
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        url = _wait_listening(server, err)
        status, checks = _readiness(url)
        assert status == 503
        assert checks == {
            "clickhouse": "unavailable",
            "redis": "unavailable",
            "kafka": "unavailable",
        }
        assert httpx.get(f"{url}/healthz").status_code == 200

        services.append(start_redis(tmp_path / "redis", redis_port))
        kafka = start_tansu(tmp_path / "kafka", kafka_port)
        services.append(kafka)
        admin = AdminClient({"bootstrap.servers": kafka.address})
        for future in admin.create_topics([NewTopic("usage-events", 1, 1)]).values():
            try:
                future.result(timeout=15)
            except KafkaException as exc:
                # The server's own readiness probe may have made it first (the broker
                # creates topics a client asks about): the topic exists either way.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

        deadline = time.monotonic() + TIMEOUT_S
        while _readiness(url)[1] != {
            "clickhouse": "unavailable", "redis": "ok", "kafka": "ok"
        }:  # fmt: skip
            assert time.monotonic() < deadline, f"not recovered: {_readiness(url)}"
            time.sleep(0.5)
        assert _readiness(url)[0] == 503
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert "s3cret" not in err.read_text()


def _wait_listening(server: subprocess.Popen[bytes], err: Path) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", err.read_text())
        if found:
            return found.group(1)
        assert server.poll() is None, f"exited {server.returncode}:\n{err.read_text()[-2000:]}"
        time.sleep(0.1)
    pytest.fail(f"did not start:\n{err.read_text()[-2000:]}")


def test_clickhouse_unreachable_at_start_is_connected_on_a_later_check(
    reports: UsageReports, chdb_dsn: str
) -> None:
    # The first connection fails as an unreachable server does; the next one reaches chDB.
    client = reports.clickhouse
    assert client is not None
    attempts = iter([SinkError("cannot connect to ClickHouse", attempts=1), client])

    def connect() -> object:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    reports.clickhouse = None
    reports.connect_clickhouse = connect  # type: ignore[assignment]
    with pytest.raises(SourceUnavailable, match="cannot connect"):
        reports.check_clickhouse()
    reports.check_clickhouse()
    assert reports.clickhouse is client
