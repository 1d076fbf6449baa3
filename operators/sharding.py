"""Stable assignment of tenants to shards (the keys of the stateful step)."""

from __future__ import annotations

import zlib


def shard_of(tenant: str, shards: int) -> str:
    """Shard key for ``tenant``: the same in every process and after every restart.

    (Python's hash() is salted per process, so it cannot be used here.)
    """
    return str(zlib.crc32(tenant.encode("utf-8", "surrogatepass")) % shards)
