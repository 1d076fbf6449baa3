"""Stable assignment of tenants to shards (the keys of the stateful step)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import NamedTuple

from operators.model import Event

# Tenants whose shard is remembered; past that, it is computed each time.
_CACHE_LIMIT = 1_000_000


def shard_of(tenant: str, shards: int) -> str:
    """Shard key for ``tenant``: the same in every process and after every restart.

    (Python's hash() is salted per process, so it cannot be used here.)
    """
    return str(zlib.crc32(tenant.encode("utf-8", "surrogatepass")) % shards)


class ShardEvents(NamedTuple):
    """One shard's events of a partition's batch, each with the partition's progress.

    ``progress_ms[i]`` is the latest event time of the batch up to and including
    ``events[i]``, over every tenant: what lateness is judged against.
    """

    events: list[Event]
    progress_ms: list[int]


class ShardSplitter:
    """Splits a batch of one input partition by shard, in input order."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self._cache: dict[str, str] = {}

    def split(self, events: Sequence[Event]) -> dict[str, ShardEvents]:
        """Every shard's part of ``events`` (an empty one for a shard without events)."""
        cache, shards = self._cache, self.shards
        parts = {str(s): ShardEvents([], []) for s in range(shards)}
        latest: int | None = None
        for event in events:
            tenant = event.tenant
            key = cache.get(tenant)
            if key is None:
                key = shard_of(tenant, shards)
                if len(cache) < _CACHE_LIMIT:
                    cache[tenant] = key
            if latest is None or event.time_ms > latest:
                latest = event.time_ms
            part = parts[key]
            part.events.append(event)
            part.progress_ms.append(latest)
        return parts
