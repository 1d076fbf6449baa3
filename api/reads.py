"""``GET /v1/estimate`` and ``GET /v1/invoice``: the key's tenant's spend so far and its
dry-run invoice, as ``meterwax estimate --json`` and ``meterwax invoice --json`` print them."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import read_tenant
from api.context import ApiContext, json_response
from api.params import query_params
from api.problems import Problem
from reports.invoices import build_invoice, invoice_json
from reports.usage import build_estimate, estimate_json


async def estimate(request: Request) -> Response:
    """The estimate of the billing period ``period`` names (default: the one holding now)."""
    context = ApiContext.of(request)
    tenant = read_tenant(request, context.keys)
    params, _ = query_params(request, ("period", "tenant"))
    now_ms = context.clock.now_ms()
    report = await run_in_threadpool(
        build_estimate, context.reports, tenant, params.get("period"), now_ms
    )
    return json_response(estimate_json(report))


async def invoice(request: Request) -> Response:
    """The dry-run invoice of the billing period ``period`` names (required)."""
    context = ApiContext.of(request)
    tenant = read_tenant(request, context.keys)
    params, _ = query_params(request, ("period", "tenant"))
    period = params.get("period")
    if period is None:
        raise Problem(
            400, "missing_period", "period is required, e.g. ?period=2026-11", field="period"
        )
    now_ms = context.clock.now_ms()
    bill = await run_in_threadpool(build_invoice, context.reports, tenant, period, now_ms)
    return json_response(invoice_json(bill, now_ms))


ROUTES = [
    Route("/v1/estimate", estimate, methods=["GET"]),
    Route("/v1/invoice", invoice, methods=["GET"]),
]
