"""What every route needs, held once by the application: stores, keys, clock, ingest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from api.ingest_pipeline import IngestPipeline
from api.keys import KeyStore
from config.clock import Clock
from reports.usage import UsageReports


@dataclass(frozen=True)
class ApiContext:
    """The application's shared state; ``ingest`` is None when the API takes no events."""

    reports: UsageReports
    keys: KeyStore
    clock: Clock
    # The flow's window size: the finest window_size a usage query can ask for.
    flow_window_ms: int
    ingest: IngestPipeline | None = None
    # Signs the usage page's portal tokens (None: only tenants' read keys open it).
    portal_secret: bytes | None = None
    # Origins allowed to embed the usage page in a frame.
    portal_frame_ancestors: str = "'self'"

    @staticmethod
    def of(request: Request) -> ApiContext:
        """The context of the application serving ``request``."""
        context: ApiContext = request.app.state.context
        return context


def json_response(body: Any, status: int = 200) -> Response:
    """``body`` as JSON; per-tenant data, so no shared cache may keep it."""
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
