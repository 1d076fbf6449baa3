"""Start-up mistakes, as a user meets them: one line on stderr, exit code 2, no secret.

Each case runs the real ``meterwax`` command in a subprocess against the real
broker, redis-server and chDB, so that everything the process prints is seen,
including what native code writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sinks.local_services import RunningService, free_port
from tests.fixtures.redis import REDIS_PASSWORD

# Two halves, so that a message quoting the part before an unencoded '/' or '#'
# is caught too.
SECRET_HEAD, SECRET_TAIL = "Qz7headSecret", "Wk4tailSecret"


def meterwax(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would, without any METERWAX_* settings of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERWAX_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit code 2 and exactly one stderr line, which holds every one of ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    for text in (result.stdout, result.stderr):
        assert SECRET_HEAD not in text
        assert SECRET_TAIL not in text


@pytest.fixture
def chdb_dir(tmp_path: Path) -> Path:
    """A chDB directory of its own (this test process holds the session's)."""
    return tmp_path / "chdb"


@pytest.mark.parametrize(
    "flags",
    [
        ["--dsn", f"http://u:{SECRET_HEAD}/{SECRET_TAIL}@ch.example"],
        ["--dsn", f"http://u:{SECRET_HEAD} {SECRET_TAIL}@127.0.0.1:9"],
        ["--dsn", f"http://u:{SECRET_HEAD}#{SECRET_TAIL}@ch.example"],
        ["--dsn", f"http://u:{SECRET_HEAD}?{SECRET_TAIL}@ch.example"],
        ["--dsn", f"u:{SECRET_HEAD}{SECRET_TAIL}@ch.example:9000"],
        ["--dsn", f"http://ch.example:8123/?password={SECRET_HEAD}{SECRET_TAIL}"],
        ["--redis-url", f"redis://:{SECRET_HEAD}/{SECRET_TAIL}@redis.example"],
        ["--redis-url", f"redis://:{SECRET_HEAD}#{SECRET_TAIL}@redis.example"],
    ],
    ids=["slash", "space", "hash", "question", "no-scheme", "query", "redis-slash", "redis-hash"],
)
def test_malformed_urls_are_one_line_without_the_password(
    flags: list[str], tmp_path: Path, chdb_dir: Path
) -> None:
    dsn = [] if "--dsn" in flags else ["--dsn", f"chdb://{chdb_dir}"]
    result = meterwax("run", *flags, *dsn, "--no-progress", cwd=tmp_path)
    assert_no_secret(result)
    field = "clickhouse.dsn" if "--dsn" in flags else "redis.url"
    assert_one_line(result, field)


def test_print_config_masks_secret_kafka_properties(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(
        "kafka:\n  config:\n"
        f"    sasl.password: {SECRET_HEAD}1\n"
        f"    ssl.key.password: {SECRET_HEAD}2\n"
        f"    sasl.oauthbearer.client.secret: {SECRET_TAIL}3\n"
        "    security.protocol: sasl_ssl\n"
    )
    result = meterwax("run", "--config", str(config), "--print-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_no_secret(result)
    assert '"security.protocol": "sasl_ssl"' in result.stdout


def test_missing_input_file(tmp_path: Path, chdb_dir: Path) -> None:
    missing = tmp_path / "no-such-events.jsonl"
    result = meterwax(
        *("run", "--input-path", str(missing), "--dsn", f"chdb://{chdb_dir}", "--no-progress"),
        cwd=tmp_path,
    )
    assert_one_line(result, "input.path", str(missing), "does not exist", "check the path")


@pytest.mark.parametrize(
    ("dsn", "words"),
    [
        ("postgres://u@db:5432/meterwax", ["scheme 'postgres'", "expected chdb://PATH"]),
        ("http://u@ch.example:80x1", ["port", "fix the port"]),
        ("http://ch.example:8123?password=abc123xyz", ["sets password", "in the URL itself"]),
    ],
    ids=["scheme", "port", "query"],
)
def test_bad_dsn(dsn: str, words: list[str], tmp_path: Path) -> None:
    result = meterwax("run", "--dsn", dsn, "--no-progress", cwd=tmp_path)
    assert_one_line(result, "clickhouse.dsn", *words)


def test_invalid_redis_url(tmp_path: Path, chdb_dir: Path) -> None:
    result = meterwax(
        *("run", "--redis-url", "redis://redis.example:63x79/0"),
        *("--dsn", f"chdb://{chdb_dir}", "--no-progress"),
        cwd=tmp_path,
    )
    assert_one_line(result, "redis.url", "invalid Redis URL", "expected redis://")


def test_wrong_redis_password(
    redis_with_password: RunningService, tmp_path: Path, chdb_dir: Path
) -> None:
    wrong = f"{SECRET_HEAD}{REDIS_PASSWORD}"
    result = meterwax(
        *("run", "--redis-url", f"redis://:{wrong}@{redis_with_password.address}/0"),
        *("--dsn", f"chdb://{chdb_dir}", "--no-progress"),
        cwd=tmp_path,
    )
    line = assert_one_line(result, "redis.url", "refused the credentials", "fix the password")
    assert "check the address" not in line
    assert_no_secret(result)


def test_unreachable_broker(tmp_path: Path, chdb_dir: Path) -> None:
    result = meterwax(
        *("run", "--input", "kafka", "--brokers", f"127.0.0.1:{free_port()}", "--no-tail"),
        *("--dsn", f"chdb://{chdb_dir}", "--no-progress"),
        cwd=tmp_path,
    )
    line = assert_one_line(result, "kafka.brokers", "cannot reach Kafka", "check the brokers")
    assert "dead_letter" not in line


def test_missing_topic(
    kafka_brokers: str, new_topic: Callable[..., str], tmp_path: Path, chdb_dir: Path
) -> None:
    existing = new_topic()
    missing = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    result = meterwax(
        *("run", "--input", "kafka", "--brokers", kafka_brokers, "--no-tail"),
        *("--topic", existing, "--topic", missing),
        *("--dsn", f"chdb://{chdb_dir}", "--no-progress"),
        cwd=tmp_path,
    )
    line = assert_one_line(result, "kafka.topics", repr(missing), "not found", "fix the name")
    assert repr(existing) not in line


@pytest.fixture
def held_chdb(chdb_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """``chdb_dir``, held open by another process until the test ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from sinks.clickhouse import connect; "
            "client = connect(sys.argv[1], 'meterwax'); client.command('SELECT 1'); "
            "print('ready', flush=True); sys.stdin.read()",
            f"chdb://{chdb_dir}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    yield chdb_dir
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)


@pytest.mark.parametrize(
    "argv",
    [
        ["estimate", "--tenant", "acme"],
        ["invoice", "--tenant", "acme", "--period", "2026-11"],
        ["reconcile", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00Z"],
        ["run", "--no-progress"],
    ],
    ids=["estimate", "invoice", "reconcile", "run"],
)
def test_chdb_directory_held_by_another_process(
    argv: list[str], held_chdb: Path, tmp_path: Path
) -> None:
    result = meterwax(*argv, "--dsn", f"chdb://{held_chdb}", cwd=tmp_path)
    assert_one_line(result, "clickhouse.dsn", str(held_chdb), "in use by another process", "wait")


def test_a_window_size_that_straddles_a_tenants_period_start(
    tmp_path: Path, chdb_dir: Path
) -> None:
    pricing = tmp_path / "pricing.yaml"
    pricing.write_text(
        "plans:\n"
        "  - id: p\n    currency: USD\n    versions:\n"
        '      - { version: v1, effective_from: "2026-01-01T00:00:00Z", prices: {} }\n'
        "subscriptions:\n"
        "  - { tenant: zeta, plan: p, timezone: America/St_Johns }\n"
    )
    config = tmp_path / "settings.yaml"
    config.write_text(f"window:\n  size: 1h\ncatalogs:\n  pricing: {pricing}\n")
    result = meterwax(
        *("run", "--config", str(config), "--dsn", f"chdb://{chdb_dir}", "--no-progress"),
        cwd=tmp_path,
    )
    assert_one_line(result, "window.size", "tenant 'zeta'", "America/St_Johns", "divides 30m")


def test_a_window_size_that_straddles_a_price_version_start(tmp_path: Path, chdb_dir: Path) -> None:
    pricing = tmp_path / "pricing.yaml"
    pricing.write_text(
        "plans:\n"
        "  - id: p\n    currency: USD\n    versions:\n"
        '      - { version: v1, effective_from: "2026-01-01T00:00:00Z", prices: {} }\n'
        '      - { version: v2, effective_from: "2026-11-20T10:17:00Z", prices: {} }\n'
        "default_plan: p\n"
    )
    config = tmp_path / "settings.yaml"
    config.write_text(f"window:\n  size: 1h\ncatalogs:\n  pricing: {pricing}\n")
    result = meterwax(
        *("run", "--config", str(config), "--dsn", f"chdb://{chdb_dir}", "--no-progress"),
        cwd=tmp_path,
    )
    assert_one_line(result, "window.size", "plan 'p' version 'v2'", "10:17", "divides 1m")
