"""Exact duplicate detection by idempotency key over an event-time horizon."""

from __future__ import annotations

import heapq


class DedupState:
    """Remembers idempotency keys until the watermark passes their time plus a horizon.

    Keys are filed in event-time buckets so expiry drops whole buckets: memory
    is bounded by the keys seen within ``horizon_ms`` of event time, and a
    lookup is one dict probe whatever the horizon.
    """

    __slots__ = ("_bucket_ms", "_buckets", "_heap", "_seen", "horizon_ms")

    def __init__(self, horizon_ms: int, bucket_ms: int = 60_000) -> None:
        if horizon_ms < 0 or bucket_ms <= 0:
            raise ValueError("horizon_ms must be >= 0 and bucket_ms > 0")
        self.horizon_ms = horizon_ms
        self._bucket_ms = bucket_ms
        self._seen: set[str] = set()
        self._buckets: dict[int, list[str]] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: str) -> bool:
        return key in self._seen

    def add(self, key: str, time_ms: int) -> bool:
        """Record ``key``; True if it is new, False if it is a duplicate."""
        if key in self._seen:
            return False
        bucket = time_ms // self._bucket_ms
        self._seen.add(key)
        keys = self._buckets.get(bucket)
        if keys is None:
            self._buckets[bucket] = [key]
            heapq.heappush(self._heap, bucket)
        else:
            keys.append(key)
        return True

    def expire(self, watermark_ms: int) -> int:
        """Drop keys whose bucket ended more than the horizon before ``watermark_ms``."""
        dropped = 0
        limit = watermark_ms - self.horizon_ms
        heap, buckets, seen = self._heap, self._buckets, self._seen
        while heap and (heap[0] + 1) * self._bucket_ms <= limit:
            bucket = heapq.heappop(heap)
            keys = buckets.pop(bucket)
            seen.difference_update(keys)
            dropped += len(keys)
        return dropped
