"""The ASGI application (Starlette, served by uvicorn): routes, errors, the OpenAPI document.

``build_app`` takes the shared context and, optionally, more routes (e.g. pages
another package serves beside the API); ``app.router.routes`` can be extended too.
Every error is an RFC 9457 problem (see ``api.problems``). Requests are logged
by method, path and status only: never a key, a header or a query string.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api import health, ingest, reads, usage
from api.context import ApiContext, json_response
from api.portal import portal_routes
from api.problems import Problem, problem_response
from operators.estimates import CurrencyMismatchError, PeriodError
from reports.usage import SourceUnavailable, UnknownTenantError
from reports.usage_windows import UsageQueryError
from sinks.redis_live_usage import LiveUsageError

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document kept in the repository (api/openapi.yaml): the API's contract."""
    document: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return document


async def _openapi(_request: Request) -> Response:
    return json_response(openapi_document())


def build_app(context: ApiContext, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The API over ``context``, with ``extra_routes`` mounted beside its own."""
    routes: list[BaseRoute] = [
        *health.ROUTES,
        *ingest.ROUTES,
        *usage.ROUTES,
        *reads.ROUTES,
        Route("/openapi.json", _openapi, methods=["GET"]),
        *portal_routes(
            context.reports,
            token_secret=context.portal_secret,
            keys=context.keys,
            clock=context.clock,
            frame_ancestors=context.portal_frame_ancestors,
        ),
        *extra_routes,
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            Problem: _problem,
            HTTPException: _http_error,
            PeriodError: _period_error,
            UsageQueryError: _usage_query_error,
            UnknownTenantError: _unknown_tenant,
            SourceUnavailable: _unavailable,
            Exception: _internal,
        },
    )
    app.state.context = context
    app.add_middleware(_AccessLog)
    return app


async def _problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return problem_response(
            Problem(
                405,
                "method_not_allowed",
                f"{request.url.path} takes {allow or 'other methods'} only",
                field="method",
                headers={"Allow": allow},
            )
        )
    if exc.status_code == 404:
        return problem_response(
            Problem(404, "not_found", f"no endpoint {request.url.path}", field="path")
        )
    return problem_response(Problem(exc.status_code, "http_error", str(exc.detail)))


async def _period_error(_request: Request, exc: Exception) -> Response:
    return problem_response(Problem(400, "bad_period", f"period: {exc}", field="period"))


async def _usage_query_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UsageQueryError)
    return problem_response(Problem(400, "bad_query", str(exc), field=exc.field))


async def _unknown_tenant(_request: Request, exc: Exception) -> Response:
    # The tenant comes from the key (or a portal token): that is what to fix.
    return problem_response(Problem(404, "unknown_tenant", str(exc), field="Authorization"))


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        Problem(503, "unavailable", "usage data unavailable", headers={"Retry-After": "5"})
    )


async def _internal(request: Request, exc: Exception) -> Response:
    if isinstance(exc, CurrencyMismatchError | LiveUsageError):
        log.error("%s %s: inconsistent usage data: %s", request.method, request.url.path, exc)
    else:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response(Problem(500, "internal", "internal error"))


class _AccessLog:
    """One line per request: method, path, status (never headers or the query)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_logged(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            log.info("%s %s %s", scope["method"], scope["path"], status)


__all__ = ["ApiContext", "build_app", "openapi_document"]
