"""A small read-only HTTP API over the estimates and dry-run invoices, per tenant.

Endpoints (JSON in and out, standard library server, one thread per request):

``GET /healthz``
    ``{"status": "ok"}``; no key needed.
``GET /v1/usage[?period=YYYY-MM|instant]``
    the estimate of ``meterwax estimate --json`` for the key's tenant (default:
    the period holding now).
``GET /v1/invoice?period=YYYY-MM|instant``
    the dry-run invoice of ``meterwax invoice --json``.

Every ``/v1`` request needs ``Authorization: Bearer <key>``. The tenant comes
from the key and from nothing else: a ``tenant`` parameter is only allowed to
repeat it (another tenant is 403). Errors are ``{"error": code, "message": text}``
with 400 (bad parameters or period), 401 (missing or unknown key), 403, 404
(unknown path or tenant), 405 (not GET), 503 (ClickHouse or Redis unreachable).
Keys never reach a log: requests are logged by method, path and status only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from api.keys import KeyStore
from config.clock import SYSTEM_CLOCK, Clock
from operators.estimates import CurrencyMismatchError, PeriodError
from reports.invoices import build_invoice, invoice_json
from reports.usage import (
    SourceUnavailable,
    UnknownTenantError,
    UsageReports,
    build_estimate,
    estimate_json,
)
from sinks.redis_live_usage import LiveUsageError

log = logging.getLogger(__name__)

_PARAMETERS = frozenset({"period", "tenant"})
_REJECTED_METHODS = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ApiError(Exception):
    """A request the API refuses: the status, a stable code and a message for the caller."""

    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ApiServer(ThreadingHTTPServer):
    """The HTTP server; holds what every request handler needs."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        reports: UsageReports,
        keys: KeyStore,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(address, _Handler)
        self.reports = reports
        self.keys = keys
        self.clock = clock


Route = Callable[[ApiServer, str, Mapping[str, str]], dict[str, Any]]


def _usage(server: ApiServer, tenant: str, params: Mapping[str, str]) -> dict[str, Any]:
    now_ms = server.clock.now_ms()
    return estimate_json(build_estimate(server.reports, tenant, params.get("period"), now_ms))


def _invoice(server: ApiServer, tenant: str, params: Mapping[str, str]) -> dict[str, Any]:
    period = params.get("period")
    if period is None:
        raise ApiError(
            HTTPStatus.BAD_REQUEST, "missing_period", "period is required, e.g. ?period=2026-11"
        )
    now_ms = server.clock.now_ms()
    return invoice_json(build_invoice(server.reports, tenant, period, now_ms), now_ms)


_ROUTES: dict[str, Route] = {"/v1/usage": _usage, "/v1/invoice": _invoice}
_HEALTH = "/healthz"


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    # Seconds a connection may sit idle: a slow client cannot hold a thread forever.
    timeout = 30

    def version_string(self) -> str:
        """The Server header: no Python version for the curious."""
        return "meterwax"

    def do_GET(self) -> None:
        """Serve one GET: health, or an authenticated report."""
        try:
            path, params = self._target()
            if path == _HEALTH:
                self._send(HTTPStatus.OK, {"status": "ok"})
                return
            route = _ROUTES.get(path)
            if route is None:
                raise ApiError(HTTPStatus.NOT_FOUND, "not_found", f"no endpoint {path}")
            tenant = self._tenant()
            asked = params.get("tenant")
            if asked is not None and asked != tenant:
                raise ApiError(
                    HTTPStatus.FORBIDDEN, "forbidden", "a key can read its own tenant's data only"
                )
            self._send(HTTPStatus.OK, route(self.server, tenant, params))
        except ApiError as exc:
            self._error(exc)
        except PeriodError as exc:
            self._error(ApiError(HTTPStatus.BAD_REQUEST, "bad_period", f"period: {exc}"))
        except UnknownTenantError as exc:
            self._error(ApiError(HTTPStatus.NOT_FOUND, "unknown_tenant", str(exc)))
        except SourceUnavailable as exc:
            log.warning("%s %s: %s", self.command, self._path_only(), exc)
            self._error(
                ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", "usage data unavailable")
            )
        except (CurrencyMismatchError, LiveUsageError):
            log.exception("%s %s: inconsistent usage data", self.command, self._path_only())
            self._error(ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "internal error"))
        except Exception:
            log.exception("%s %s failed", self.command, self._path_only())
            self._error(ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "internal error"))

    def _reject_method(self) -> None:
        path = self._path_only()
        if path == _HEALTH or path in _ROUTES:
            error = ApiError(
                HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed", f"{path} takes GET only"
            )
            self._error(error, {"Allow": "GET"})
        else:
            self._error(ApiError(HTTPStatus.NOT_FOUND, "not_found", f"no endpoint {path}"))

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _reject_method

    def _target(self) -> tuple[str, dict[str, str]]:
        """The path and the query parameters (each at most once, known names only)."""
        parts = urlsplit(self.path)
        params = {}
        for name, values in parse_qs(parts.query, keep_blank_values=True).items():
            if name not in _PARAMETERS:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    "bad_query",
                    f"unknown query parameter {name!r}; use {', '.join(sorted(_PARAMETERS))}",
                )
            if len(values) > 1:
                raise ApiError(HTTPStatus.BAD_REQUEST, "bad_query", f"{name} is given twice")
            params[name] = values[0]
        return parts.path, params

    def _tenant(self) -> str:
        """The tenant of the bearer key; 401 without a known one."""
        header = self.headers.get("Authorization")
        if header is None:
            raise ApiError(
                HTTPStatus.UNAUTHORIZED, "missing_key", "send Authorization: Bearer <key>"
            )
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(
                HTTPStatus.UNAUTHORIZED, "bad_authorization", "send Authorization: Bearer <key>"
            )
        tenant = self.server.keys.tenant_for(key)
        if tenant is None:
            raise ApiError(HTTPStatus.UNAUTHORIZED, "invalid_key", "the key is not valid")
        return tenant

    def _error(self, error: ApiError, headers: Mapping[str, str] | None = None) -> None:
        extra = dict(headers or {})
        if error.status is HTTPStatus.UNAUTHORIZED:
            extra["WWW-Authenticate"] = 'Bearer realm="meterwax"'
        self._send(error.status, {"error": error.code, "message": error.message}, extra)

    def _send(
        self, status: HTTPStatus, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body, indent=2).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        # Usage and invoices are per tenant: no shared cache may keep them.
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _path_only(self) -> str:
        # Query strings are not logged: a client might put a secret in one.
        return urlsplit(self.path).path

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request: method, path, status (never headers or the query)."""
        log.info("%s %s %s", self.command, self._path_only(), code)

    def log_message(self, format: str, *args: Any) -> None:
        """Protocol errors from the base class go to the logger, not to stderr."""
        log.warning("%s: %s", self.address_string(), format % args)
