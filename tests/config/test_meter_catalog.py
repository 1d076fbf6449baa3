"""Loading the meter catalog: the bundled example, and every error a user can make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.meter_catalog import EXAMPLE_METER_CATALOG, load_meter_catalog
from config.meters import Aggregation

VALID_METER = """\
  - slug: api_calls
    event_type: api.request
    aggregation: COUNT
"""


def write(tmp_path: Path, text: str, name: str = "meters.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_meter_catalog(path)
    return str(caught.value)


def test_example_catalog_loads() -> None:
    catalog = load_meter_catalog(EXAMPLE_METER_CATALOG)

    assert [m.slug for m in catalog.meters] == [
        "api_calls",
        "tokens",
        "storage_gb",
        "active_users",
        "cpu_seconds",
    ]
    tokens = catalog.meter("tokens")
    assert tokens.aggregation is Aggregation.SUM
    assert tokens.event_type == "llm.completion"
    assert tokens.value_path is not None
    assert tokens.value_path.find({"tokens": 120, "model": "m"}) == 120
    assert [(name, path.text) for name, path in tokens.group_by] == [("model", "$.model")]
    assert catalog.meter("api_calls").value_path is None
    assert catalog.meter("storage_gb").aggregation is Aggregation.MAX
    assert catalog.meter("active_users").aggregation is Aggregation.UNIQUE_COUNT
    assert [m.slug for m in catalog.by_event_type["api.request"]] == ["api_calls", "active_users"]
    assert [name for name, _ in catalog.meter("cpu_seconds").group_by] == ["region"]


def test_all_fields_are_converted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
meters:
  - slug: latest_seats
    event_type: seats.changed
    aggregation: latest
    description: Seats in use.
    value_property: $.seats.count
    group_by:
      plan_tier: $['plan tier']
      first_item: $.items[0]
""",
    )
    meter = load_meter_catalog(path).meter("latest_seats")

    assert meter.aggregation is Aggregation.LATEST
    assert meter.description == "Seats in use."
    assert meter.value_path is not None
    assert meter.value_path.steps == ("seats", "count")
    assert [(name, p.steps) for name, p in meter.group_by] == [
        ("plan_tier", ("plan tier",)),
        ("first_item", ("items", 0)),
    ]


def test_json_catalog_loads_by_extension(tmp_path: Path) -> None:
    document = {
        "meters": [
            {"slug": "tokens", "event_type": "llm.completion", "aggregation": "Sum",
             "value_property": "$.tokens"},
        ]
    }  # fmt: skip
    path = write(tmp_path, json.dumps(document), name="meters.json")

    meter = load_meter_catalog(path).meter("tokens")

    assert meter.aggregation is Aggregation.SUM


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope.yaml")

    assert "nope.yaml: (file): file not found; check the path" in message


def test_unparsable_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "meters:\n  - slug: [api_calls\n    event_type: x\n")

    message = load_error(path)

    assert f"{path}: line 3, column 15: invalid YAML" in message
    assert "fix the YAML syntax there" in message


def test_unparsable_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"meters": [\n  {"slug": }\n]}', name="meters.json")

    message = load_error(path)

    assert f"{path}: line 2, column 12: invalid JSON" in message
    assert "fix the JSON syntax" in message


def test_empty_file(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "# nothing yet\n"))

    assert "meters.yaml: (file): the file is empty; add the top-level keys meters" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, VALID_METER))

    assert "meters.yaml: (top level): should be a mapping" in message
    assert "write it as a mapping with the keys meters" in message


def test_meters_must_be_a_list(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "meters:\n  api_calls: COUNT\n"))

    assert "meters.yaml: meters: should be a list" in message
    assert "write one '- ' item per line" in message


def test_meter_entry_must_be_a_mapping(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "meters:\n  - api_calls\n"))

    assert "meters.yaml: meters[0]: should be a mapping, not 'api_calls'" in message
    assert "with the keys slug, event_type, aggregation" in message


def test_at_least_one_meter(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "meters: []\n"))

    assert "meters.yaml: meters: needs at least one item; add one" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, f"meters:\n{VALID_METER}meter:\n  - x\n"))

    assert "meters.yaml: meter: unknown key 'meter'; did you mean 'meters'?" in message


def test_misspelt_meter_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"meters:\n{VALID_METER}"
        "  - slug: tokens\n    event_type: llm.completion\n    aggregation: SUM\n"
        "    value_propery: $.tokens\n",
    )

    message = load_error(path)

    assert (
        "meters.yaml: meters[1].value_propery: unknown key 'value_propery'; "
        "did you mean 'value_property'? allowed keys: slug, event_type" in message
    )


def test_missing_required_key(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "meters:\n  - slug: api_calls\n    aggregation: COUNT\n"))

    assert "meters.yaml: meters[0].event_type: this required key is missing; add it" in message


def test_unknown_aggregation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"meters:\n{VALID_METER}"
        "  - slug: latency\n    event_type: api.request\n    aggregation: AVERAGE\n"
        "    value_property: $.ms\n",
    )

    message = load_error(path)

    assert message == (
        f"{path}: meters[1].aggregation: 'AVERAGE' is not one of "
        "SUM, COUNT, MAX, UNIQUE_COUNT, LATEST; pick one of those"
    )


@pytest.mark.parametrize("slug", ["Api_Calls", "1st", "api-calls", "a" * 64, "_x"])
def test_invalid_slug(tmp_path: Path, slug: str) -> None:
    path = write(
        tmp_path, f"meters:\n  - slug: '{slug}'\n    event_type: e\n    aggregation: COUNT\n"
    )

    message = load_error(path)

    assert f"meters.yaml: meters[0].slug: {slug!r} is not a valid slug" in message
    assert "use 1-63 lower-case letters, digits or '_', starting with a letter" in message


def test_longest_valid_slug_is_accepted(tmp_path: Path) -> None:
    slug = "a" * 63
    path = write(
        tmp_path, f"meters:\n  - slug: {slug}\n    event_type: e\n    aggregation: COUNT\n"
    )

    assert load_meter_catalog(path).meters[0].slug == slug


def test_event_type_must_be_text(tmp_path: Path) -> None:
    message = load_error(
        write(tmp_path, "meters:\n  - slug: a\n    event_type: 42\n    aggregation: COUNT\n")
    )

    assert "meters.yaml: meters[0].event_type: 42 is not text; write it as text" in message


def test_event_type_must_not_be_empty(tmp_path: Path) -> None:
    message = load_error(
        write(tmp_path, "meters:\n  - slug: a\n    event_type: ''\n    aggregation: COUNT\n")
    )

    assert "meters.yaml: meters[0].event_type: must not be empty; write a value" in message


def test_duplicate_slugs(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, f"meters:\n{VALID_METER}{VALID_METER}"))

    assert (
        "meters.yaml: meters[1].slug: 'api_calls' is already the slug of meters[0]; "
        "give each meter its own slug" in message
    )


def test_count_meter_rejects_value_property(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, f"meters:\n{VALID_METER}    value_property: $.n\n"))

    assert (
        "meters.yaml: meters[0].value_property: a COUNT meter counts events and takes no "
        "value_property; remove it, or pick another aggregation" in message
    )


@pytest.mark.parametrize("aggregation", ["SUM", "MAX", "UNIQUE_COUNT", "LATEST"])
def test_other_aggregations_need_value_property(tmp_path: Path, aggregation: str) -> None:
    path = write(
        tmp_path, f"meters:\n  - slug: a\n    event_type: e\n    aggregation: {aggregation}\n"
    )

    message = load_error(path)

    assert (
        f"meters.yaml: meters[0].value_property: a {aggregation} meter needs the value" in message
    )
    assert "add value_property: a JSON path into data such as '$.tokens'" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tokens", "JSON path 'tokens' must start with '$'"),
        ("$", "JSON path '$' selects the whole data object"),
        ("'$.a b'", "JSON path '$.a b': cannot read ' b' at position 3"),
        ("7", "7 is not a JSON path"),
    ],
)
def test_bad_value_property(tmp_path: Path, text: str, problem: str) -> None:
    path = write(
        tmp_path,
        "meters:\n  - slug: a\n    event_type: e\n    aggregation: SUM\n"
        f"    value_property: {text}\n",
    )

    message = load_error(path)

    assert f"meters.yaml: meters[0].value_property: {problem}" in message
    assert "paths into data look like '$.tokens'" in message


def test_bad_group_by_path(tmp_path: Path) -> None:
    message = load_error(
        write(tmp_path, f"meters:\n{VALID_METER}    group_by:\n      model: model\n")
    )

    assert "meters.yaml: meters[0].group_by.model: JSON path 'model' must start with '$'" in message


def test_bad_group_by_name(tmp_path: Path) -> None:
    message = load_error(
        write(tmp_path, f"meters:\n{VALID_METER}    group_by:\n      Model: $.m\n")
    )

    assert (
        "meters.yaml: meters[0].group_by: group-by name 'Model' is not valid; "
        "use 1-63 lower-case letters" in message
    )


def test_group_by_must_be_a_mapping(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, f"meters:\n{VALID_METER}    group_by: [$.model]\n"))

    assert "meters.yaml: meters[0].group_by: should be a mapping" in message
    assert "write it as 'key: value' lines" in message


def test_every_field_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
meters:
  - slug: Bad
    event_type: e
    aggregation: COUNT
  - slug: ok
    aggregation: AVERAGE
    colour: blue
""",
    )

    lines = load_error(path).splitlines()

    assert len(lines) == 4
    assert all(line.startswith(f"{path}: meters[") for line in lines)
    assert [line.split(": ")[1] for line in lines] == [
        "meters[0].slug",
        "meters[1].event_type",
        "meters[1].aggregation",
        "meters[1].colour",
    ]
