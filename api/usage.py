"""``GET /v1/usage``: the key's tenant's usage by window and group values (see
``reports.usage_windows``)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import read_tenant
from api.context import ApiContext, json_response
from api.params import query_params
from api.problems import Problem
from operators.timeparse import TimeFormatError, parse_rfc3339_ms
from reports.usage_windows import (
    WINDOW_SIZES,
    UsageQuery,
    build_usage,
    check_time_zone,
    default_range,
    usage_json,
)

_SINGLE = ("from", "to", "window_size", "window_time_zone", "tenant")
_REPEATED = ("group_by", "filter")
_MAX_GROUPS = 8


async def usage(request: Request) -> Response:
    """Final usage per meter, window and group values; provisional amounts apart."""
    context = ApiContext.of(request)
    tenant = read_tenant(request, context.keys)
    params, lists = query_params(request, _SINGLE, _REPEATED)
    now_ms = context.clock.now_ms()
    window_size = params.get("window_size", "period")
    if window_size not in WINDOW_SIZES:
        raise Problem(
            400,
            "bad_window_size",
            f"{window_size!r} is not a window size; use one of {', '.join(WINDOW_SIZES)}",
            field="window_size",
        )
    time_zone = check_time_zone(params.get("window_time_zone", "UTC"))
    group_by = tuple(dict.fromkeys(lists["group_by"]))
    if len(group_by) > _MAX_GROUPS or any(not name for name in group_by):
        raise Problem(
            400,
            "bad_group_by",
            f"name 1 to {_MAX_GROUPS} group-by dimensions, each once and not empty",
            field="group_by",
        )
    filters: dict[str, tuple[str, ...]] = {}
    for text in lists["filter"]:
        name, colon, value = text.partition(":")
        if not colon or not name:
            raise Problem(
                400,
                "bad_filter",
                f"{text!r}: write a filter as name:value, e.g. filter=model:gpt-4o",
                field="filter",
            )
        filters[name] = (*filters.get(name, ()), value)
    start_ms, end_ms = await run_in_threadpool(default_range, context.reports, tenant, now_ms)
    if "from" in params:
        start_ms = _instant(params["from"], "from")
    if "to" in params:
        end_ms = _instant(params["to"], "to")
    query = UsageQuery(tenant, start_ms, end_ms, window_size, time_zone, group_by, filters)
    report = await run_in_threadpool(
        build_usage, context.reports, query, now_ms, context.flow_window_ms
    )
    return json_response(usage_json(report))


def _instant(text: str, field: str) -> int:
    try:
        at_ms = parse_rfc3339_ms(text)
    except TimeFormatError as exc:
        raise Problem(
            400, "bad_time", f"{exc}; write e.g. 2026-11-01T00:00:00Z", field=field
        ) from None
    # Billing periods and ClickHouse's DateTime64 hold 1970 to 2200.
    if not 0 <= at_ms < 7_258_118_400_000:
        raise Problem(400, "bad_time", f"{text!r} is outside 1970 to 2200", field=field)
    return at_ms


ROUTES = [Route("/v1/usage", usage, methods=["GET"])]
