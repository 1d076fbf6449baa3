"""``meterwax api``: serve the read-only HTTP API (``api.server``), and create its keys."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from api.keys import KeyStore, add_key
from api.portal_tokens import MAX_TTL_MS, issue, read_secret
from api.server import ApiServer
from cli.options import add_source_options, settings_from
from config.durations import parse_duration_ms
from config.errors import ConfigError
from config.pricing_catalog import load_pricing_catalog
from reports.usage import SourceUnavailable, UsageReports


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
    token = commands.add_parser(
        "portal-token",
        help="issue a short-lived token for a tenant's usage page",
        description="Prints a token that opens --tenant's usage page (/portal#token=...) "
        "until --ttl has passed; it is signed with the secret in --portal-secret-file.",
    )
    token.add_argument("--tenant", required=True, help="the tenant the page shows")
    token.add_argument("--ttl", default="15m", help="how long it works, e.g. 15m (at most 24h)")
    token.add_argument(
        "--portal-secret-file", type=Path, required=True, help="file holding the signing secret"
    )


def main(args: argparse.Namespace) -> int:
    """Run ``meterwax api``: 0 on success, 1 if the server cannot start, 2 on bad input."""
    try:
        if args.api_command == "create-key":
            return _create_key(args)
        if args.api_command == "portal-token":
            return _portal_token(args)
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


def _portal_token(args: argparse.Namespace) -> int:
    secret = read_secret(args.portal_secret_file)
    try:
        ttl_ms = parse_duration_ms(args.ttl)
    except ValueError as exc:
        raise ConfigError(f"--ttl: {exc}") from None
    if not 0 < ttl_ms <= MAX_TTL_MS:
        raise ConfigError(f"--ttl: {args.ttl!r} must be more than 0 and at most 24h")
    print(issue(secret, args.tenant, args.clock.now_ms() + ttl_ms))
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
