"""Load the meter catalog file (YAML, or JSON by extension) into a MeterCatalog."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator

from config.errors import ConfigIssue, FieldProblem, config_error, duplicates, load_catalog_file
from config.jsonpath import JsonPath, JsonPathError, compile_path
from config.meters import Aggregation, MeterCatalog, MeterDefinition

# Bundled with the package; what `meterwax run` uses when given no catalog paths.
EXAMPLE_METER_CATALOG = Path(__file__).parent / "examples" / "meters.yaml"

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_NAME_RULE = "use 1-63 lower-case letters, digits or '_', starting with a letter (e.g. 'api_calls')"
_AGGREGATIONS = ", ".join(Aggregation)
_PATH_FORMS = "paths into data look like '$.tokens', \"$['key with spaces']\" or '$.items[0]'"


def _slug(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise FieldProblem(f"{value!r} is not a valid slug", _NAME_RULE)
    return value


def _group_names(groups: dict[str, JsonPath]) -> dict[str, JsonPath]:
    for name in groups:
        if not _NAME.fullmatch(name):
            raise FieldProblem(f"group-by name {name!r} is not valid", _NAME_RULE)
    return groups


def _aggregation(value: object) -> Aggregation:
    # Accept any case in the file; the catalog always holds the enum.
    if isinstance(value, str) and value.upper() in Aggregation.__members__:
        return Aggregation(value.upper())
    raise FieldProblem(f"{value!r} is not one of {_AGGREGATIONS}", "pick one of those")


def _json_path(value: object) -> JsonPath:
    if not isinstance(value, str):
        raise FieldProblem(f"{value!r} is not a JSON path", _PATH_FORMS)
    try:
        return compile_path(value)
    except JsonPathError as exc:
        raise FieldProblem(str(exc), _PATH_FORMS) from None


_PathText = Annotated[JsonPath, PlainValidator(_json_path)]


class _Spec(BaseModel):
    # Unknown keys are errors so that a misspelt key is reported, not ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _MeterSpec(_Spec):
    """One entry of ``meters:`` exactly as written in the file."""

    slug: Annotated[str, AfterValidator(_slug)]
    event_type: str = Field(min_length=1)
    aggregation: Annotated[Aggregation, PlainValidator(_aggregation)]
    description: str = ""
    value_property: _PathText | None = None
    group_by: Annotated[dict[str, _PathText], AfterValidator(_group_names)] = Field(
        default_factory=dict
    )


class _MeterFile(_Spec):
    """The whole meter catalog file."""

    meters: list[_MeterSpec] = Field(min_length=1)


def load_meter_catalog(path: Path) -> MeterCatalog:
    """Load and validate the meter catalog at ``path``.

    Raises ConfigError naming the file, the field and the fix for every problem found.
    """
    spec = load_catalog_file(path, _MeterFile)
    issues = [*_duplicate_slugs(spec.meters), *_value_property_issues(spec.meters)]
    if issues:
        raise config_error(path, issues)
    return MeterCatalog.of(tuple(_definition(meter) for meter in spec.meters))


def _duplicate_slugs(meters: list[_MeterSpec]) -> list[ConfigIssue]:
    slugs = [meter.slug for meter in meters]
    return [
        ConfigIssue(
            f"meters[{index}].slug",
            f"{slugs[index]!r} is already the slug of meters[{first}]",
            "give each meter its own slug",
        )
        for index, first in duplicates(slugs)
    ]


def _value_property_issues(meters: list[_MeterSpec]) -> list[ConfigIssue]:
    """COUNT counts events, every other aggregation folds a value taken from ``data``."""
    issues = []
    for index, meter in enumerate(meters):
        field = f"meters[{index}].value_property"
        if meter.aggregation is Aggregation.COUNT and meter.value_property is not None:
            problem = "a COUNT meter counts events and takes no value_property"
            issues.append(ConfigIssue(field, problem, "remove it, or pick another aggregation"))
        elif meter.aggregation is not Aggregation.COUNT and meter.value_property is None:
            problem = f"a {meter.aggregation} meter needs the value to aggregate"
            fix = "add value_property: a JSON path into data such as '$.tokens'"
            issues.append(ConfigIssue(field, problem, fix))
    return issues


def _definition(meter: _MeterSpec) -> MeterDefinition:
    return MeterDefinition(
        slug=meter.slug,
        event_type=meter.event_type,
        aggregation=meter.aggregation,
        value_path=meter.value_property,
        group_by=tuple(meter.group_by.items()),
        description=meter.description,
    )
