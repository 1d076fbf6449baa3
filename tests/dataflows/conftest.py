"""Fixtures for flow tests: catalogs written as a user would write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.meter_catalog import load_meter_catalog
from config.meters import MeterCatalog
from config.pricing import PricingCatalog
from config.pricing_catalog import load_pricing_catalog

METERS_YAML = """
meters:
  - slug: tokens
    event_type: llm.completion
    aggregation: SUM
    value_property: $.tokens
    group_by: { model: $.model }
  - slug: calls
    event_type: api.request
    aggregation: COUNT
  - slug: users
    event_type: api.request
    aggregation: UNIQUE_COUNT
    value_property: $.user
  - slug: peak_gb
    event_type: storage.snapshot
    aggregation: MAX
    value_property: $.gb
"""

PRICING_YAML = """
default_plan: basic
plans:
  - id: basic
    currency: USD
    versions:
      - version: v1
        effective_from: "2026-01-01T00:00:00Z"
        prices:
          tokens: { model: per_unit, unit_price: "0.000002" }
          calls: { model: per_unit, unit_price: "0.0001" }
          users: { model: per_unit, unit_price: "0.01" }
          peak_gb: { model: per_unit, unit_price: "0.003" }
      - version: v2
        effective_from: "2026-11-01T00:00:00Z"
        prices:
          tokens: { model: per_unit, unit_price: "0.0000015" }
          calls: { model: per_unit, unit_price: "0.0002" }
          users: { model: per_unit, unit_price: "0.01" }
          peak_gb: { model: per_unit, unit_price: "0.004" }
  - id: pro
    currency: EUR
    versions:
      - version: p1
        effective_from: "2026-01-01T00:00:00Z"
        prices:
          tokens: { model: per_unit, unit_price: "0.000001" }
          calls: { model: per_unit, unit_price: "0.00005" }
subscriptions:
  - { tenant: acme, plan: pro }
"""


@pytest.fixture(scope="session")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> tuple[MeterCatalog, PricingCatalog]:
    """The test meter and pricing catalogs, loaded through the real loaders."""
    folder: Path = tmp_path_factory.mktemp("catalogs")
    (folder / "meters.yaml").write_text(METERS_YAML)
    (folder / "pricing.yaml").write_text(PRICING_YAML)
    meters = load_meter_catalog(folder / "meters.yaml")
    return meters, load_pricing_catalog(folder / "pricing.yaml", meters)
