"""Meter definitions: which events count, how, and split by what."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from config.jsonpath import JsonPath


class Aggregation(StrEnum):
    """How a meter folds event values into a window."""

    SUM = "SUM"
    COUNT = "COUNT"
    MAX = "MAX"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    LATEST = "LATEST"


@dataclass(frozen=True, slots=True)
class MeterDefinition:
    """One meter. ``value_path`` is None only for COUNT meters."""

    slug: str
    event_type: str
    aggregation: Aggregation
    value_path: JsonPath | None
    group_by: tuple[tuple[str, JsonPath], ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class MeterCatalog:
    """All meters, indexed by the event type they match (several may share one)."""

    meters: tuple[MeterDefinition, ...]
    by_event_type: Mapping[str, tuple[MeterDefinition, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, meters: tuple[MeterDefinition, ...]) -> MeterCatalog:
        """Build the catalog and its event-type index."""
        index: dict[str, list[MeterDefinition]] = {}
        for meter in meters:
            index.setdefault(meter.event_type, []).append(meter)
        return cls(meters=meters, by_event_type={k: tuple(v) for k, v in index.items()})

    def meter(self, slug: str) -> MeterDefinition:
        """The meter called ``slug``; KeyError if there is none."""
        for meter in self.meters:
            if meter.slug == slug:
                return meter
        raise KeyError(slug)
