"""``GET /healthz`` (the process serves) and ``GET /readyz`` (it can do its work: ClickHouse,
Redis and, when it ingests, Kafka answer). Neither needs a key; neither names a secret."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import ApiContext, json_response
from reports.usage import SourceUnavailable
from sinks.kafka_ingest import IngestUnavailable

log = logging.getLogger(__name__)


async def healthz(_request: Request) -> Response:
    """Liveness: the event loop answers."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: each dependency checked; 503 naming the ones that fail."""
    context = ApiContext.of(request)
    checks: dict[str, Callable[[], None]] = {
        "clickhouse": context.reports.check_clickhouse,
        "redis": context.reports.check_redis,
    }
    if context.ingest is not None:
        checks["kafka"] = context.ingest.producer.check
    # Side by side: a probe's timeout bounds the slowest check, not their sum.
    states = await asyncio.gather(*(_state(check) for check in checks.values()))
    results = dict(zip(checks, states, strict=True))
    if context.reports.redis is None:
        results["redis"] = "not configured"
    ready = all(state != "unavailable" for state in results.values())
    body = {"status": "ready" if ready else "unavailable", "checks": results}
    return json_response(body, status=200 if ready else 503)


async def _state(check: Callable[[], None]) -> str:
    try:
        await run_in_threadpool(check)
    except (SourceUnavailable, IngestUnavailable) as exc:
        log.warning("not ready: %s", exc)
        return "unavailable"
    return "ok"


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
