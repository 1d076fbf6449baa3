"""Builders for the pure-operator tests: catalogs, CloudEvents, raw messages, events.

Catalogs are built straight from the dataclasses (not from YAML) so these tests
depend on the operators only, not on the config loaders.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from config.jsonpath import compile_path
from config.meters import Aggregation, MeterCatalog, MeterDefinition
from config.pricing import MeterPrice, Plan, PlanVersion, PricingCatalog, Subscription, UnitPrice
from operators.model import Event, GroupValues, Measure, RawMessage

JAN_2026_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOV_2026_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
# Wall clock for parsing: 2026-06-01T00:00:00Z, so 2026 event times are not in the future.
NOW_MS = 1_780_272_000_000

KNOWN_TENANTS = frozenset({"acme", "globex"})

# Marks a CloudEvent attribute to leave out (see cloud_event).
DROP: Any = object()


def build_meter_catalog() -> MeterCatalog:
    """One meter per aggregation; ``llm.completion`` feeds two meters (SUM and COUNT)."""
    return MeterCatalog.of(
        (
            MeterDefinition(
                slug="tokens",
                event_type="llm.completion",
                aggregation=Aggregation.SUM,
                value_path=compile_path("$.tokens"),
                # Declared out of order on purpose: measures must come out sorted by name.
                group_by=(("region", compile_path("$.region")), ("model", compile_path("$.model"))),
            ),
            MeterDefinition(
                slug="completions",
                event_type="llm.completion",
                aggregation=Aggregation.COUNT,
                value_path=None,
            ),
            MeterDefinition(
                slug="storage_gb",
                event_type="storage.snapshot",
                aggregation=Aggregation.MAX,
                value_path=compile_path("$.gb"),
            ),
            MeterDefinition(
                slug="active_users",
                event_type="api.request",
                aggregation=Aggregation.UNIQUE_COUNT,
                value_path=compile_path("$.user_id"),
            ),
            MeterDefinition(
                slug="seats",
                event_type="seats.snapshot",
                aggregation=Aggregation.LATEST,
                value_path=compile_path("$.seats"),
            ),
        )
    )


def aggregations(catalog: MeterCatalog) -> dict[str, Aggregation]:
    """Meter slug -> aggregation, as the window store takes it."""
    return {meter.slug: meter.aggregation for meter in catalog.meters}


def build_pricing_catalog() -> PricingCatalog:
    """Plan ``starter`` with two versions (Jan and Nov 2026); ``acme`` subscribes, no default."""
    starter = Plan(
        id="starter",
        currency="USD",
        versions=(
            PlanVersion(
                version="2026-01",
                effective_from_ms=JAN_2026_MS,
                prices={
                    "tokens": MeterPrice(UnitPrice(Decimal("0.000002"))),
                    "completions": MeterPrice(UnitPrice(Decimal("0.0001"))),
                },
            ),
            PlanVersion(
                version="2026-11",
                effective_from_ms=NOV_2026_MS,
                prices={
                    "tokens": MeterPrice(UnitPrice(Decimal("0.0000018"))),
                    "completions": MeterPrice(UnitPrice(Decimal("0.00012"))),
                },
            ),
        ),
    )
    return PricingCatalog(
        plans={"starter": starter}, subscriptions={"acme": Subscription("starter")}
    )


def cloud_event(**overrides: Any) -> dict[str, Any]:
    """A valid ``llm.completion`` CloudEvent for tenant ``acme``; ``overrides`` replace keys.

    An override whose value is ``DROP`` removes the key.
    """
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "gateway",
        "type": "llm.completion",
        "subject": "acme",
        "time": "2026-03-01T12:00:00.250Z",
        "data": {"tokens": 1500, "model": "gpt", "region": "eu"},
    }
    doc.update(overrides)
    return {key: value for key, value in doc.items() if value is not DROP}


def payload(**overrides: Any) -> bytes:
    """``cloud_event(**overrides)`` as JSON bytes."""
    return orjson.dumps(cloud_event(**overrides))


def raw_message(
    data: bytes, offset: int = 0, partition: int = 0, origin: str = "usage"
) -> RawMessage:
    """A RawMessage at the given input coordinates."""
    return RawMessage(payload=data, origin=origin, partition=partition, offset=offset)


def make_event(
    time_ms: int,
    value: Decimal | str | None = Decimal(1),
    *,
    meter: str = "tokens",
    tenant: str = "acme",
    event_id: str | None = None,
    groups: GroupValues = (),
    offset: int = 0,
    partition: int = 0,
) -> Event:
    """An already-parsed event with one measure, for the stateful operators."""
    event_id = f"evt-{time_ms}-{offset}" if event_id is None else event_id
    message = raw_message(b'{"id": "%s"}' % event_id.encode(), offset=offset, partition=partition)
    return Event(
        tenant=tenant,
        source="gateway",
        id=event_id,
        type="test",
        time_ms=time_ms,
        measures=(Measure(meter, value, groups),),
        message=message,
    )


@pytest.fixture(scope="session")
def pricing_catalog() -> PricingCatalog:
    return build_pricing_catalog()
