"""The contract of a durable idempotency store (the layer behind keyed-state dedup).

A claim says: "event (tenant, source, id) is being counted, by this message".
The store remembers the first claimant's token; later claims get back
whether they are that same message again (a replay after a crash, which must
be counted again because the state that counted it was lost) or another
message carrying the same event (a true duplicate).

Events are told apart by (tenant, source, id) within the UTC day of their
event time (``claim_day``): a durable store keeps its claims in day buckets,
so a copy whose ``time`` falls on another day is not the same event to it.
The compact forms a store keeps are defined here: ``key_hash`` (the native
core's hash of the idempotency key) and ``token_tag``; ``pack_claims`` packs a
batch of claims into one bytes string of records (date, key hash, token tag),
which the native core builds from its columns (``NativeShard.claim_records``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import NamedTuple, Protocol

import xxhash

DAY_MS = 86_400_000


class Claim(NamedTuple):
    """One event to claim. ``token`` names the claimant: flow instance and message position.

    ``time_ms`` is the event's time: it picks the day bucket the claim lives in.
    """

    tenant: str
    source: str
    id: str
    token: str
    time_ms: int


class ClaimStatus(IntEnum):
    """Outcome of a claim."""

    NEW = 0  # first claim: count the event
    REPLAY = 1  # claimed before by the same token: the same message again, count it
    DUPLICATE = 2  # claimed before by another token: do not count


# A packed claim: UTC date of event time (YYYY-MM-DD), key_hash, token_tag.
RECORD_BYTES = 10 + 16 + 8
# ClaimStatus values as the digits claim_packed returns.
DUPLICATE_DIGIT = ord("2")


class IdempotencyStore(Protocol):
    """A batch claim, one round trip; raises only for errors a retry cannot fix."""

    def claim(self, claims: Sequence[Claim]) -> list[ClaimStatus]:
        """Claim every event; results are in the order of ``claims``."""
        ...

    def claim_packed(self, records: bytes, claims: Callable[[], Sequence[Claim]]) -> bytes:
        """Claim packed ``records`` (``pack_claims``); one ClaimStatus digit each, in order.

        ``claims`` gives the same claims unpacked, for a store that needs more than
        the records (the Redis store while keys of its old layout may exist).
        """
        ...

    def start_claim_packed(
        self, records: bytes, claims: Callable[[], Sequence[Claim]]
    ) -> Callable[[], bytes]:
        """``claim_packed``, begun: the returned call gives its digits, waiting for them.

        A store that can leaves the claim on its way while the caller does other
        work; calls must be finished in the order they were started.
        """
        ...


def claim_token(instance: str, origin: str, partition: int, offset: int) -> str:
    """The token of a message: which flow instance counted it, and where it was read."""
    return f"{instance}|{origin}|{partition}|{offset}"


def claim_day(time_ms: int) -> int:
    """The UTC day (days since 1970-01-01) of ``time_ms``: the bucket of an event's claim.

    One day of event time per bucket: the same (tenant, source, id) with a time
    on another day is another event to a durable store.
    """
    return time_ms // DAY_MS


def claim_date(day: int) -> str:
    """The date (YYYY-MM-DD) of a ``claim_day``: how stores name a day's bucket."""
    return (_EPOCH + datetime.timedelta(days=day)).isoformat()


_EPOCH = datetime.date(1970, 1, 1)


def pack_claims(claims: Sequence[Claim]) -> bytes:
    """``claims`` as ``RECORD_BYTES`` records: claim date, ``key_hash``, ``token_tag``."""
    dates: dict[int, bytes] = {}
    parts: list[bytes] = []
    for c in claims:
        day = claim_day(c.time_ms)
        date = dates.get(day) or dates.setdefault(day, claim_date(day).encode())
        parts += (date, key_hash(c.tenant, c.source, c.id), token_tag(c.token))
    return b"".join(parts)


def key_hash(tenant: str, source: str, id: str) -> bytes:
    """xxh3-128 of the idempotency key, 16 big-endian bytes: what the native core computes.

    The key is ``Event.idempotency_key`` (length-prefixed, lengths in characters)
    in UTF-8; lone surrogates, which the JSON parser lets through, are kept as is.
    """
    key = f"{len(tenant)}:{tenant}{len(source)}:{source}{id}"
    return xxhash.xxh3_128_digest(_encode(key))


def token_tag(token: str) -> bytes:
    """The 8 bytes a store keeps for a claim's token (xxh3-64 of its UTF-8, big-endian).

    Tells the same message from another one: two different tokens share a tag
    with probability 2^-64, and such a clash can only make a duplicate look like
    a replay of the message that claimed first.
    """
    return xxhash.xxh3_64_digest(_encode(token))


def _encode(text: str) -> bytes:
    # surrogatepass: a lone surrogate must not make the claim (and the flow) fail.
    return text.encode("utf-8", "surrogatepass")


class MemoryIdempotencyStore:
    """In-process store with the same semantics (for single-process runs and tests)."""

    def __init__(self) -> None:
        # (date, key hash) -> token tag, as the Redis store keeps them.
        self._tags: dict[bytes, bytes] = {}

    def claim(self, claims: Sequence[Claim]) -> list[ClaimStatus]:
        """Claim every event; results are in the order of ``claims``."""
        digits = self.claim_packed(pack_claims(claims), lambda: claims)
        return [ClaimStatus(digit - ord("0")) for digit in digits]

    def start_claim_packed(
        self, records: bytes, claims: Callable[[], Sequence[Claim]]
    ) -> Callable[[], bytes]:
        """Claims at once (nothing to wait for in memory)."""
        digits = self.claim_packed(records, claims)
        return lambda: digits

    def claim_packed(self, records: bytes, claims: Callable[[], Sequence[Claim]]) -> bytes:
        """Claim packed ``records``; one ClaimStatus digit each, in order."""
        out = bytearray()
        tags = self._tags
        for at in range(0, len(records), RECORD_BYTES):
            key, tag = records[at : at + 26], records[at + 26 : at + RECORD_BYTES]
            held = tags.get(key)
            if held is None:
                tags[key] = tag
            out += b"0" if held is None else b"1" if held == tag else b"2"
        return bytes(out)
