"""The JSON path dialect used by meter value and group-by properties."""

from __future__ import annotations

from typing import Any

import pytest

from config.jsonpath import MISSING, JsonPathError, compile_path


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("$.tokens", ("tokens",)),
        ("$.usage.prompt_tokens", ("usage", "prompt_tokens")),
        ("$.x-request-id", ("x-request-id",)),
        ("$._private", ("_private",)),
        ("$['key with spaces']", ("key with spaces",)),
        ('$["double quoted"].b', ("double quoted", "b")),
        (r"$['it\'s']", ("it's",)),
        (r'$["say \"hi\""]', ('say "hi"',)),
        (r"$['back\\slash']", ("back\\slash",)),
        ("$.items[0]", ("items", 0)),
        ("$[2][10].name", (2, 10, "name")),
        ("$['a.b'].c", ("a.b", "c")),
    ],
)
def test_compile_path_reads_keys_and_indexes(text: str, steps: tuple[str | int, ...]) -> None:
    path = compile_path(text)
    assert path.steps == steps
    assert path.text == text


DOCUMENT: dict[str, Any] = {
    "tokens": 42,
    "usage": {"prompt_tokens": 7, "cached": 0, "note": None, "flag": False},
    "key with spaces": "spaced",
    'say "hi"': "quoted",
    "items": [{"name": "first"}, {"name": "second"}],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$.tokens", 42),
        ("$.usage.prompt_tokens", 7),
        ("$['key with spaces']", "spaced"),
        (r'$["say \"hi\""]', "quoted"),
        ("$.items[1].name", "second"),
        ("$.items", [{"name": "first"}, {"name": "second"}]),
        # Falsy values are values, not absences.
        ("$.usage.cached", 0),
        ("$.usage.note", None),
        ("$.usage.flag", False),
    ],
)
def test_find_returns_the_value_at_the_path(text: str, expected: Any) -> None:
    assert compile_path(text).find(DOCUMENT) == expected


@pytest.mark.parametrize(
    "text",
    [
        "$.absent",
        "$.usage.absent",
        "$.items[2]",
        "$.items[0].absent",
        "$.tokens.deeper",  # key on a number
        "$.usage[0]",  # index on an object
        "$.items.name",  # key on a list
    ],
)
def test_find_returns_missing_when_a_step_is_absent(text: str) -> None:
    assert compile_path(text).find(DOCUMENT) is MISSING


def test_find_on_a_non_container_document_is_missing() -> None:
    assert compile_path("$.a").find("not a dict") is MISSING
    assert compile_path("$[0]").find(None) is MISSING


@pytest.mark.parametrize(
    ("text", "message_part"),
    [
        ("tokens", "must start with '$'"),
        ("", "must start with '$'"),
        ("$", "selects the whole data object"),
        ("$..tokens", "cannot read '..tokens' at position 1"),
        ("$.1st", "cannot read '.1st'"),
        ("$.a b", "cannot read ' b'"),
        ("$[-1]", "cannot read '[-1]'"),
        ("$[key]", "cannot read '[key]'"),
        ("$['unclosed]", "cannot read"),
        ("$.items[0", "cannot read '[0'"),
        ("$.a.", "cannot read '.'"),
        ("$.*", "cannot read '.*'"),
    ],
)
def test_compile_path_rejects_unsupported_text(text: str, message_part: str) -> None:
    with pytest.raises(JsonPathError) as caught:
        compile_path(text)
    assert message_part in str(caught.value)


def test_errors_suggest_the_supported_forms() -> None:
    with pytest.raises(JsonPathError, match=r"use '\.key'"):
        compile_path("$.a b")
    with pytest.raises(JsonPathError, match=r"for example '\$\.tokens'"):
        compile_path("tokens")


def test_json_path_error_is_a_value_error() -> None:
    # Callers (and pydantic validators) may catch it as a ValueError.
    assert issubclass(JsonPathError, ValueError)
