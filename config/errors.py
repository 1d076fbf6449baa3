"""Configuration errors that name the file, the field and the fix.

Also reads catalog files, because every way a catalog file can be wrong
(missing, unparsable, badly shaped, bad values) ends here as a ConfigError.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, NamedTuple, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from config.redaction import redact_url

_M = TypeVar("_M", bound=BaseModel)

# Field labels for problems that belong to no single key.
_FILE = "(file)"
_TOP_LEVEL = "(top level)"


class ConfigError(Exception):
    """Configuration that cannot work.

    The message names the file, the field and the fix, one line per problem;
    build the lines with config_message().
    """


class ConfigIssue(NamedTuple):
    """One problem found in a file, before it becomes a line of a ConfigError."""

    field: str
    problem: str
    fix: str


class FieldProblem(ValueError):
    """Raised by pydantic validators; reported at the field being validated."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


def error_report(prefix: str, exc: BaseException) -> str:
    """``prefix: message`` on one line, or the message's lines under ``prefix:``; secrets masked."""
    text = redact_url(str(exc))
    return f"{prefix}:\n{text}" if "\n" in text else f"{prefix}: {text}"


def config_message(path: Path | str, field: str, problem: str, fix: str) -> str:
    """One error line, e.g. ``meters.yaml: meters[1].slug: 'X' is not valid; use ...``."""
    return f"{path}: {field}: {problem}; {fix}"


def config_error(path: Path, issues: Sequence[ConfigIssue]) -> ConfigError:
    """A ConfigError with one line per issue, all about the file at ``path``."""
    return ConfigError("\n".join(config_message(path, *item) for item in issues))


def field_path(*steps: int | str) -> str:
    """``field_path("plans", 0, "prices", "tokens")`` is ``plans[0].prices.tokens``."""
    return "".join(_step_text(step) for step in steps).removeprefix(".") or _TOP_LEVEL


def duplicates(values: Sequence[Hashable]) -> Iterator[tuple[int, int]]:
    """``(index, index of first occurrence)`` for each value seen before."""
    first: dict[Hashable, int] = {}
    for index, value in enumerate(values):
        if value in first:
            yield index, first[value]
        else:
            first[value] = index


def load_catalog_file(path: Path, model: type[_M]) -> _M:
    """Read a YAML (or ``.json``) file and validate it as ``model``, else raise ConfigError."""
    document = _parse(path, _read_text(path))
    if document is None:
        fix = f"add the top-level keys {', '.join(model.model_fields)}"
        raise config_error(path, [ConfigIssue(_FILE, "the file is empty", fix)])
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt required key shows up twice: unknown under one name, missing under another.
        missing: dict[tuple[int | str, ...], list[str]] = {}
        for error in errors:
            if error["type"] == "missing":
                missing.setdefault(error["loc"][:-1], []).append(str(error["loc"][-1]))
        raise config_error(path, [_issue(model, error, missing) for error in errors]) from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        fix = f"check the path (relative paths start at {Path.cwd()})"
        raise config_error(path, [ConfigIssue(_FILE, "file not found", fix)]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot read the file ({exc})"
        fix = "make it a readable UTF-8 text file"
        raise config_error(path, [ConfigIssue(_FILE, problem, fix)]) from exc


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            fix = "fix the JSON syntax there"
            raise config_error(path, [ConfigIssue(where, f"invalid JSON: {exc.msg}", fix)]) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise config_error(path, [_yaml_issue(exc)]) from exc


def _yaml_issue(exc: yaml.YAMLError) -> ConfigIssue:
    fix = "fix the YAML syntax there (check indentation, ':' after keys and closing quotes)"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return ConfigIssue(where, f"invalid YAML: {exc.problem or exc}", fix)
    return ConfigIssue(_FILE, f"invalid YAML: {exc}", fix)


def _issue(
    model: type[BaseModel],
    error: ErrorDetails,
    missing: Mapping[tuple[int | str, ...], list[str]],
) -> ConfigIssue:
    """Turn one pydantic error into an issue with a field location and a fix."""
    loc = error["loc"]
    field, node = _walk(model, loc)
    value = error["input"]
    match error["type"]:
        case "value_error" if isinstance(cause := error.get("ctx", {}).get("error"), FieldProblem):
            return ConfigIssue(field, cause.problem, cause.fix)
        case "missing":
            return ConfigIssue(field, "this required key is missing", "add it")
        case "extra_forbidden":
            return _unknown_key(model, loc, missing.get(loc[:-1], []))
        case "string_type":
            fix = "write it as text, in quotes if YAML would read it as a number or date"
            return ConfigIssue(field, f"{value!r} is not text", fix)
        case "string_too_short":
            return ConfigIssue(field, "must not be empty", "write a value")
        case "too_short":
            return ConfigIssue(field, "needs at least one item", "add one")
        case "list_type":
            fix = "write one '- ' item per line"
            return ConfigIssue(field, f"should be a list, not {value!r}", fix)
        case "dict_type" | "model_type" | "model_attributes_type":
            return ConfigIssue(field, f"should be a mapping, not {value!r}", _mapping_fix(node))
        case "union_tag_invalid" | "union_tag_not_found":
            return _bad_tag(field, node, error)
        case _:
            return ConfigIssue(field, f"{error['msg']} (got {value!r})", "correct the value")


def _unknown_key(
    model: type[BaseModel], loc: tuple[int | str, ...], missing: list[str]
) -> ConfigIssue:
    """Suggest the closest missing key beside it, else the closest allowed key."""
    field, _ = _walk(model, loc)
    _, parent = _walk(model, loc[:-1])
    allowed = list(parent.model_fields) if _is_model(parent) else []
    key = str(loc[-1])
    close = difflib.get_close_matches(key, missing, n=1, cutoff=0.3) or difflib.get_close_matches(
        key, allowed, n=1
    )
    start = f"did you mean {close[0]!r}?" if close else "remove it or fix the spelling;"
    fix = f"{start} allowed keys: {', '.join(allowed)}"
    return ConfigIssue(field, f"unknown key {key!r}", fix)


def _bad_tag(field: str, node: Any, error: ErrorDetails) -> ConfigIssue:
    union, key = _unwrap(node)
    if key is None:
        return ConfigIssue(field, error["msg"], "correct the value")
    kinds = ", ".join(str(tag) for member in _members(union) for tag in _tags(member, key))
    if error["type"] == "union_tag_not_found":
        return ConfigIssue(field, f"has no {key!r} key", f"add {key}: with one of: {kinds}")
    tag = error.get("ctx", {}).get("tag")
    return ConfigIssue(field, f"{key} {tag!r} is not supported", f"use one of: {kinds}")


def _mapping_fix(node: Any) -> str:
    models = [member for member in _members(_unwrap(node)[0]) if _is_model(member)]
    if len(models) == 1:
        return f"write it as a mapping with the keys {', '.join(models[0].model_fields)}"
    return "write it as 'key: value' lines"


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, Any]:
    """Render ``loc`` as ``plans[0].prices.tokens`` and return the type annotated there.

    Follows the model's annotations so that discriminated-union tags, which
    pydantic puts into ``loc``, are left out of the text a user reads.
    """
    shown: list[int | str] = []
    node: Any = model
    for step in loc:
        node, discriminator = _unwrap(node)
        if discriminator is not None:
            node = _union_member(node, discriminator, step)
            continue
        shown.append(step)
        node = _child(node, step)
    return field_path(*shown), node


def _step_text(step: int | str) -> str:
    if isinstance(step, int):
        return f"[{step}]"
    return f".{step}" if step.isidentifier() else f"[{step!r}]"


def _unwrap(node: Any) -> tuple[Any, str | None]:
    """Strip ``Optional`` and ``Annotated``; return the discriminator an Annotated names."""
    if get_origin(node) in (Union, types.UnionType):
        members = [arg for arg in get_args(node) if arg is not type(None)]
        node = members[0] if len(members) == 1 else node
    if get_origin(node) is not Annotated:
        return node, None
    base, *metadata = get_args(node)
    for item in metadata:
        if isinstance(item, FieldInfo) and isinstance(item.discriminator, str):
            return base, item.discriminator
    return base, None


def _union_member(node: Any, discriminator: str, tag: int | str) -> Any:
    return next((m for m in _members(node) if tag in _tags(m, discriminator)), None)


def _members(node: Any) -> tuple[Any, ...]:
    return get_args(node) if get_origin(node) in (Union, types.UnionType) else (node,)


def _tags(member: Any, discriminator: str) -> tuple[Any, ...]:
    """The Literal values a union member declares for its discriminator field."""
    if not _is_model(member) or discriminator not in member.model_fields:
        return ()
    return get_args(member.model_fields[discriminator].annotation)


def _child(node: Any, step: int | str) -> Any:
    if _is_model(node):
        field = node.model_fields.get(step) if isinstance(step, str) else None
        return None if field is None else field.annotation
    args = get_args(node)
    if get_origin(node) is list and args:
        return args[0]
    if get_origin(node) is dict and len(args) == 2:
        return args[1]
    return None


def _is_model(node: Any) -> bool:
    # list[int] passes isinstance(..., type) on 3.11, so rule out generic aliases first.
    return get_origin(node) is None and isinstance(node, type) and issubclass(node, BaseModel)
