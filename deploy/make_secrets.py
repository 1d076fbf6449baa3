"""Create the passwords docker-compose.yml reads from deploy/secrets/ (once).

Existing files are kept, so running it again never changes a password that
Redis, ClickHouse or Grafana already use. Passwords are hex: they go into a
ClickHouse DSN and a Redis config line without any escaping.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

NAMES = ("redis_password", "clickhouse_password", "grafana_admin_password")


def make_secrets(directory: Path) -> list[Path]:
    """Write a random password for each missing secret; return the files created."""
    # Only the owner may list the directory; the files themselves must be readable by
    # the containers' own users, as Compose mounts them unchanged (without Swarm).
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    created = []
    for name in NAMES:
        path = directory / name
        if path.exists():
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.fchmod(fd, 0o644)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_hex(24) + "\n")
        created.append(path)
    return created


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python3 deploy/make_secrets.py [--dir DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "secrets")
    args = parser.parse_args(argv)
    for path in make_secrets(args.dir):
        print(f"created {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
