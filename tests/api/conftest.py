"""The API on a real uvicorn server over real chDB, Redis and Kafka, with keys for two tenants."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from clickhouse_connect.driver.client import Client

from api.app import build_app
from api.assemble import api_context
from api.context import ApiContext
from api.keys import Scope, create_key
from api.serve import ApiThread, bind
from config.clock import Clock, FixedClock
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from config.settings import Settings, load_settings
from reports.usage import UsageReports

NOV_2026_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DEC_2026_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z
NOW_MS = NOV_2026_MS + (DEC_2026_MS - NOV_2026_MS) // 2

METERS_YAML = """
meters:
  - slug: tokens
    event_type: llm.completion
    aggregation: SUM
    value_property: $.tokens
    group_by: { model: $.model, region: $.region }
  - slug: calls
    event_type: api.request
    aggregation: COUNT
  - slug: peak_gb
    event_type: storage.snapshot
    aggregation: MAX
    value_property: $.gb
"""

PRICING_YAML = """
plans:
  - id: basic
    currency: USD
    versions:
      - version: v1
        effective_from: "2026-01-01T00:00:00Z"
        fixed_fee: "5"
        prices:
          tokens: { model: per_unit, unit_price: "0.001" }
          calls: { model: per_unit, unit_price: "0.01" }
          peak_gb: { model: per_unit, unit_price: "0.5" }
subscriptions:
  - { tenant: acme, plan: basic }
  - { tenant: globex, plan: basic, timezone: Europe/Berlin }
"""


@pytest.fixture
def catalog_paths(tmp_path: Path) -> tuple[Path, Path]:
    """Meter and pricing catalogs as a user writes them."""
    (tmp_path / "meters.yaml").write_text(METERS_YAML)
    (tmp_path / "pricing.yaml").write_text(PRICING_YAML)
    return tmp_path / "meters.yaml", tmp_path / "pricing.yaml"


@dataclass(frozen=True)
class Keys:
    """One key per role: read keys per tenant, ingest keys, and one key with both scopes."""

    acme: str
    globex: str
    acme_ingest: str
    globex_ingest: str
    platform_ingest: str
    acme_both: str


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "api-keys.yaml"


@pytest.fixture
def keys(keys_file: Path) -> Keys:
    def make(tenant: str | None, *scopes: Scope) -> str:
        return create_key(keys_file, tenant, scopes, "2026-11-16T00:00:00Z")[1]

    return Keys(
        acme=make("acme", Scope.READ),
        globex=make("globex", Scope.READ),
        acme_ingest=make("acme", Scope.INGEST),
        globex_ingest=make("globex", Scope.INGEST),
        platform_ingest=make(None, Scope.INGEST),
        acme_both=make("acme", Scope.INGEST, Scope.READ),
    )


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def live(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    stale = list(client.scan_iter(match=f"{prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()


@pytest.fixture
def topic(new_topic: Callable[..., str]) -> str:
    return new_topic(partitions=2, prefix="api")


@pytest.fixture
def settings(
    catalog_paths: tuple[Path, Path],
    chdb_dsn: str,
    ch_database: str,
    redis_url: str,
    prefix: str,
    kafka_brokers: str,
    topic: str,
    keys_file: Path,
) -> Settings:
    return load_settings(
        None,
        {
            "catalogs": {"meters": str(catalog_paths[0]), "pricing": str(catalog_paths[1])},
            "clickhouse": {"dsn": chdb_dsn, "database": ch_database},
            "redis": {"url": redis_url, "key_prefix": prefix},
            "kafka": {"brokers": kafka_brokers, "topics": [topic]},
            "api": {"keys_file": str(keys_file), "max_body_bytes": 300_000},
        },
    )


@pytest.fixture
def reports(
    settings: Settings, ch_client: Client, ch_database: str, live: redis.Redis
) -> UsageReports:
    """The read side over the test's chDB database and Redis prefix."""
    meters = load_meter_catalog(settings.catalogs.meters)
    return UsageReports(
        pricing=load_pricing_catalog(settings.catalogs.pricing, meters),
        aggregations={meter.slug: meter.aggregation for meter in meters.meters},
        clickhouse=ch_client,
        database=ch_database,
        redis=live,
        key_prefix=settings.redis.key_prefix,
    )


@pytest.fixture
def clock() -> Clock:
    return FixedClock(NOW_MS)


@pytest.fixture
def context(
    settings: Settings, reports: UsageReports, keys: Keys, clock: Clock
) -> Iterator[ApiContext]:
    built = api_context(settings, clock, ingest=True, reports=reports)
    yield built
    assert built.ingest is not None
    built.ingest.producer.close()


Serve = Callable[[ApiContext], str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a real uvicorn server for a context; its base URL. Stopped after the test."""
    started: list[ApiThread] = []

    def start(context: ApiContext) -> str:
        server = ApiThread(build_app(context), bind("127.0.0.1", 0))
        server.start()
        started.append(server)
        return server.url

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def api(serve: Serve, context: ApiContext) -> Iterator[httpx.Client]:
    """An HTTP client of the API over the test's stores."""
    with httpx.Client(base_url=serve(context), timeout=30) as client:
        yield client


def bearer(key: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api_url(serve: Serve, context: ApiContext) -> str:
    """The base URL of a real server of the API over the test's stores."""
    return serve(context)
