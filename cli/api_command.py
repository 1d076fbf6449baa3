"""``meterwax api``: serve the HTTP API (``api.app``), and manage its keys."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from api.app import build_app
from api.assemble import api_context
from api.keys import ApiKey, Scope, create_key, load_keys, revoke_key
from api.portal_tokens import MAX_TTL_MS, issue, read_secret
from api.serve import bind, serve_forever
from cli.gc_tuning import tune_gc
from cli.options import add_source_options, settings_from
from config.display import iso_utc
from config.durations import parse_duration_ms
from config.errors import ConfigError
from config.meter_catalog import load_meter_catalog
from config.pricing_catalog import load_pricing_catalog
from sinks.kafka_ingest import IngestUnavailable


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``meterwax api serve`` and ``meterwax api keys create|list|revoke``."""
    parser = sub.add_parser(
        "api",
        help="the HTTP API (event ingest, usage, estimates, dry-run invoices) and its keys",
        description="Serve the HTTP API, one tenant per read key; manage the keys.",
    )
    commands = parser.add_subparsers(dest="api_command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve POST /v1/events, GET /v1/usage, /v1/estimate, /v1/invoice, /healthz, /readyz",
        description="Serve the API until interrupted. Keys are looked up in --keys-file, "
        "which is re-read when it changes. Events go to the first Kafka topic.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    serve.add_argument("--keys-file", type=Path, help="YAML/JSON keys file (api.keys_file)")
    serve.add_argument(
        "--no-ingest", action="store_true", help="read only: no POST /v1/events, no Kafka"
    )
    serve.add_argument(
        "--portal-secret-file",
        dest="api.portal_secret_file",
        help="file holding the secret that signs usage-page tokens (api.portal_secret_file)",
    )
    serve.add_argument("--brokers", dest="kafka.brokers", help="Kafka bootstrap servers")
    serve.add_argument("--topic", dest="kafka.topics", action="append", help="the input topic")
    add_source_options(serve)

    keys = commands.add_parser(
        "keys", help="create, list and revoke API keys", description="Manage API keys."
    )
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser(
        "create",
        help="create a key: printed once, only its hash is stored",
        description="Prints a new key and adds its SHA-256 hash to --keys-file (created if "
        "missing). The key cannot be shown again.",
    )
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--tenant", help="the tenant the key reads, or whose events it sends")
    who.add_argument(
        "--all-tenants",
        action="store_true",
        help="an ingest key that may send events of every subject (a platform's gateway)",
    )
    create.add_argument(
        "--scope",
        action="append",
        choices=[scope.value for scope in Scope],
        help="ingest and/or read (repeat for both; default read)",
    )
    create.add_argument(
        "--allow-default-plan",
        action="store_true",
        help="allow a tenant that only the catalog's default_plan covers (no subscription)",
    )
    create.add_argument("--keys-file", type=Path, required=True, help="YAML/JSON keys file")
    create.add_argument("--config", type=Path, help="YAML settings file, as for `run`")
    create.add_argument("--meters", dest="catalogs.meters", help="meter catalog YAML")
    create.add_argument("--pricing", dest="catalogs.pricing", help="pricing catalog YAML")
    listing = key_commands.add_parser(
        "list", help="list the keys (ids, tenants, scopes; never a key)"
    )
    listing.add_argument("--keys-file", type=Path, required=True, help="YAML/JSON keys file")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id (see `list`)")
    revoke.add_argument("id", help="the key's id, as `list` shows it")
    revoke.add_argument("--keys-file", type=Path, required=True, help="YAML/JSON keys file")
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
        if args.api_command == "keys":
            return _keys(args)
        if args.api_command == "portal-token":
            return _portal_token(args)
        return _serve(args)
    except ConfigError as exc:
        print(f"meterwax api: configuration error:\n{exc}", file=sys.stderr)
        return 2


def _keys(args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        return _create(args)
    if args.keys_command == "list":
        keys = load_keys(args.keys_file)
        if args.json:
            print(json.dumps([_listed(k) for k in keys], indent=2))
        else:
            for k in keys:
                tenant = k.tenant if k.tenant is not None else "(every subject)"
                print(f"{k.id}  {tenant!r:<24}  {','.join(sorted(k.scopes)):<12}  {k.created}")
        return 0
    removed = revoke_key(args.keys_file, args.id)
    if removed is None:
        print(
            f"meterwax api keys revoke: id: no key {args.id!r} in {args.keys_file}; "
            "see `meterwax api keys list`",
            file=sys.stderr,
        )
        return 2
    print(f"revoked key {removed.id} of {removed.tenant or 'every subject'}")
    return 0


def _listed(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "scopes": sorted(key.scopes),
        "created": key.created,
    }


def _create(args: argparse.Namespace) -> int:
    prefix = "meterwax api keys create"
    scopes = {Scope(s) for s in (args.scope or [Scope.READ.value])}
    if args.all_tenants and Scope.READ in scopes:
        print(
            f"{prefix}: --scope: a read key reads one tenant: use --tenant T, or "
            "--scope ingest only with --all-tenants",
            file=sys.stderr,
        )
        return 2
    if args.tenant is not None:
        settings = settings_from(args)
        meters = load_meter_catalog(settings.catalogs.meters)
        pricing = load_pricing_catalog(settings.catalogs.pricing, meters)
        if args.tenant not in pricing.subscriptions:
            if not pricing.knows(args.tenant):
                print(
                    f"{prefix}: --tenant: {args.tenant!r} has no subscription in the pricing "
                    "catalog, which names no default_plan; check the name or the catalog",
                    file=sys.stderr,
                )
                return 2
            if not args.allow_default_plan:
                print(
                    f"{prefix}: --tenant: {args.tenant!r} has no subscription, only the "
                    f"default plan {pricing.default_plan!r} covers it; check the name, or pass "
                    "--allow-default-plan if that is meant",
                    file=sys.stderr,
                )
                return 2
    try:
        record, key = create_key(args.keys_file, args.tenant, scopes, iso_utc(args.clock.now_ms()))
    except OSError as exc:
        print(
            f"{prefix}: cannot write {args.keys_file} ({exc.strerror}); "
            "check that its folder exists and is writable",
            file=sys.stderr,
        )
        return 2
    who = args.tenant if args.tenant is not None else "every subject"
    print(
        f"API key {record.id} for {who}, scopes {', '.join(sorted(record.scopes))} "
        f"(shown once; only its hash is stored in {args.keys_file}):"
    )
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
    settings = settings_from(args)
    try:
        context = api_context(
            settings, args.clock, ingest=not args.no_ingest, keys_file=args.keys_file
        )
    except IngestUnavailable as exc:
        print(f"meterwax api: {exc}", file=sys.stderr)
        return 1
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        context.reports.close()
        print(f"meterwax api: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    print(f"meterwax api: listening on http://{host!s}:{port} (Ctrl-C stops)", file=sys.stderr)
    app = build_app(context)
    tune_gc()
    try:
        serve_forever(app, sock)
    finally:
        if context.ingest is not None:
            context.ingest.producer.close()
        context.reports.close()
    return 0
