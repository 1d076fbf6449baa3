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

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from api.keys import KeyStore, add_key
from config.clock import SYSTEM_CLOCK, Clock
from config.errors import ConfigError
from config.pricing_catalog import load_pricing_catalog
from dataflows.estimate_command import (
    SourceUnavailable,
    UnknownTenantError,
    UsageReports,
    add_source_options,
    build_estimate,
    estimate_json,
    settings_from,
)
from dataflows.invoice_command import build_invoice, invoice_json
from operators.estimates import CurrencyMismatchError, PeriodError
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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``meterwax api serve`` and ``meterwax api create-key``."""
    parser = sub.add_parser(
        "api",
        help="the read-only HTTP API (usage estimates, dry-run invoices) and its keys",
        description="Serve usage estimates and dry-run invoices over HTTP, one tenant per key.",
    )
    commands = parser.add_subparsers(dest="api_command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve GET /v1/usage, /v1/invoice and /healthz",
        description="Serve the API until interrupted. Keys are looked up in --keys-file, "
        "which is re-read when it changes.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    serve.add_argument("--keys-file", type=Path, required=True, help="YAML/JSON keys file")
    add_source_options(serve)
    create = commands.add_parser(
        "create-key",
        help="create an API key for a tenant: printed once, only its hash is stored",
        description="Prints a new key for --tenant and appends its SHA-256 hash to "
        "--keys-file (created if missing). The key cannot be shown again.",
    )
    create.add_argument("--tenant", required=True, help="the tenant the key reads")
    create.add_argument("--keys-file", type=Path, required=True, help="YAML/JSON keys file")
    create.add_argument("--config", type=Path, help="YAML settings file, as for `run`")
    create.add_argument("--pricing", dest="catalogs.pricing", help="pricing catalog YAML")


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax api``: 0 on success, 1 if the server cannot start, 2 on bad input."""
    try:
        if args.api_command == "create-key":
            return _create_key(args)
        return _serve(args)
    except ConfigError as exc:
        print(f"meterwax api: configuration error:\n{exc}", file=sys.stderr)
        return 2


def _create_key(args: argparse.Namespace) -> int:
    pricing = load_pricing_catalog(settings_from(args).catalogs.pricing)
    if not pricing.knows(args.tenant):
        print(
            f"meterwax api create-key: --tenant: {args.tenant!r} has no subscription in the "
            "pricing catalog, which names no default_plan; check the name or the catalog",
            file=sys.stderr,
        )
        return 2
    try:
        key = add_key(args.keys_file, args.tenant)
    except OSError as exc:
        print(
            f"meterwax api create-key: cannot write {args.keys_file} ({exc.strerror}); "
            "check that its folder exists and is writable",
            file=sys.stderr,
        )
        return 2
    print(f"API key for {args.tenant} (shown once; only its hash is stored in {args.keys_file}):")
    print(key)
    return 0


def _serve(args: argparse.Namespace) -> int:
    keys = KeyStore(args.keys_file)
    try:
        reports = UsageReports.from_settings(settings_from(args))
    except SourceUnavailable as exc:
        print(f"meterwax api: {exc}", file=sys.stderr)
        return 1
    try:
        server = ApiServer((args.host, args.port), reports, keys, args.clock)
    except OSError as exc:
        reports.close()
        print(f"meterwax api: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(f"meterwax api: listening on http://{host!s}:{port} (Ctrl-C stops)", file=sys.stderr)
    # SIGTERM (e.g. from a container runtime) stops it as cleanly as Ctrl-C; shutdown()
    # must run outside the serving thread.
    signal.signal(
        signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        reports.close()
    return 0
