"""Fixtures shared by every test package.

chDB hosts one engine per process and refuses a second data path, so the whole
test session shares ONE chDB directory; tests stay isolated by using a fresh
database each. Open chDB only through ``chdb_dsn`` in tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from config.redaction import forget_all
from sinks.clickhouse import connect
from sinks.clickhouse_schema import migrate

# Real services, started once per test session: see tests/fixtures/.
pytest_plugins = ["tests.fixtures.redis", "tests.fixtures.kafka", "tests.fixtures.webhook_receiver"]


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """DSN of the one chDB data directory this test process may open."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def ch_database() -> str:
    """A database name no other test uses."""
    return f"test_{uuid.uuid4().hex}"


@pytest.fixture
def ch_client(chdb_dsn: str, ch_database: str) -> Iterator[Client]:
    """A chDB client with ``ch_database`` migrated; the database is dropped afterwards."""
    client = connect(chdb_dsn, ch_database)
    migrate(client, ch_database)
    yield client
    client.command(f"DROP DATABASE IF EXISTS `{ch_database}`")
    client.close()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets a test's settings remembered must not mask text in the next test."""
    yield
    forget_all()
