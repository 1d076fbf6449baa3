"""Flags the commands share: where the settings come from, and dotted flags as overrides."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from config.settings import Settings, load_settings


def dotted_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Flags like ``window.grace`` as nested settings overrides; unset flags are left out."""
    overrides: dict[str, dict[str, Any]] = {}
    for name, value in vars(args).items():
        if "." in name and value is not None:
            section, key = name.split(".", 1)
            overrides.setdefault(section, {})[key] = value
    return overrides


def add_source_options(parser: argparse.ArgumentParser, *, live: bool = True) -> None:
    """The settings flags reports take (as for ``run``); ``live`` adds ``--redis-url``."""
    parser.add_argument("--config", type=Path, help="YAML settings file, as for `run`")
    parser.add_argument("--dsn", dest="clickhouse.dsn", help="chdb://PATH or http(s)://...")
    parser.add_argument("--database", dest="clickhouse.database")
    parser.add_argument("--meters", dest="catalogs.meters", help="meter catalog YAML")
    parser.add_argument("--pricing", dest="catalogs.pricing", help="pricing catalog YAML")
    if live:
        parser.add_argument(
            "--redis-url",
            dest="redis.url",
            help="redis://[:password@]host:port/db of the live counters (default: none)",
        )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from ``--config``, the environment and the dotted flags (raises ConfigError)."""
    return load_settings(args.config, dotted_overrides(args))
