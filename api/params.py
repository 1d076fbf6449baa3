"""Query parameters: known names only, each once unless it may repeat."""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request

from api.problems import Problem


def query_params(
    request: Request, single: Collection[str], repeated: Collection[str] = ()
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(single-valued, repeatable) parameters of ``request``; Problem 400 naming the
    parameter that is unknown or given twice."""
    known = sorted({*single, *repeated})
    singles: dict[str, str] = {}
    lists: dict[str, list[str]] = {name: [] for name in repeated}
    for name, value in request.query_params.multi_items():
        if name in lists:
            lists[name].append(value)
        elif name in single:
            if name in singles:
                raise Problem(400, "bad_query", f"{name} is given twice", field=name)
            singles[name] = value
        else:
            raise Problem(
                400,
                "bad_query",
                f"unknown query parameter {name!r}; use {', '.join(known)}",
                field=name,
            )
    return singles, lists
