"""The customer usage page: Starlette routes a platform can embed for its customers.

``GET /portal``
    the page (plain HTML, CSS and JavaScript under api/static/); it reads its
    token from the URL fragment (``/portal#token=...``), which browsers never
    send to a server, so it stays out of access logs.
``GET /portal/data``
    the page's JSON (reports.portal): ``Authorization: Bearer <token>``, where
    the token is a short-lived portal token (``mwp_...``, api.portal_tokens) or
    a tenant's read key (``mwx_...``). The tenant comes from the token alone.
``GET /portal/static/...``
    the page's assets.

Errors are ``{"error", "message"}``: 401 (missing, invalid or expired token),
404 (unknown tenant), 503 (ClickHouse or Redis unreachable).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from api.keys import KeyStore, Scope
from api.portal_tokens import PREFIX, verify
from config.clock import SYSTEM_CLOCK, Clock
from reports.portal import portal_data
from reports.usage import SourceUnavailable, UnknownTenantError, UsageReports

STATIC = Path(__file__).parent / "static"
_NO_STORE = {"Cache-Control": "no-store"}


def portal_routes(
    reports: UsageReports,
    *,
    token_secret: bytes | None,
    keys: KeyStore | None = None,
    clock: Clock = SYSTEM_CLOCK,
    frame_ancestors: str = "'self'",
) -> list[BaseRoute]:
    """The page's routes, to mount in the API's Starlette app.

    ``token_secret`` verifies portal tokens (None: only read keys work);
    ``frame_ancestors`` lists the origins allowed to embed the page in a frame.
    """
    security = {
        **_NO_STORE,
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; frame-ancestors {frame_ancestors}"
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }

    def page(request: Request) -> Response:
        return FileResponse(STATIC / "portal.html", headers=security)

    def data(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "missing_token", "send Authorization: Bearer <portal token>")
        tenant = _tenant(token.strip(), token_secret, keys, clock.now_ms())
        if tenant is None:
            return _error(401, "invalid_token", "the token is not valid or has expired")
        try:
            return JSONResponse(portal_data(reports, tenant, clock.now_ms()), headers=_NO_STORE)
        except UnknownTenantError:
            return _error(404, "unknown_tenant", "this tenant has no plan")
        except SourceUnavailable:
            return _error(503, "unavailable", "usage cannot be read right now; try again")

    return [
        Route("/portal", page, methods=["GET"]),
        Route("/portal/data", data, methods=["GET"]),
        Mount("/portal/static", StaticFiles(directory=STATIC), name="portal-static"),
    ]


def _tenant(token: str, secret: bytes | None, keys: KeyStore | None, now_ms: int) -> str | None:
    if token.startswith(PREFIX):
        return None if secret is None else verify(secret, token, now_ms)
    if keys is None:
        return None
    # Only a tenant's read key opens its page: never an ingest-only or platform key.
    key = keys.lookup(token)
    return key.tenant if key is not None and key.allows(Scope.READ) else None


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = (
        {**_NO_STORE, "WWW-Authenticate": 'Bearer realm="meterwax"'} if status == 401 else _NO_STORE
    )
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)
