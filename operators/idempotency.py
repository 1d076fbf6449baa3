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
core's hash of the idempotency key) and ``token_tag``.
"""

from __future__ import annotations

from collections.abc import Sequence
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


class IdempotencyStore(Protocol):
    """A batch claim, one round trip; raises only for errors a retry cannot fix."""

    def claim(self, claims: Sequence[Claim]) -> list[ClaimStatus]:
        """Claim every event; results are in the order of ``claims``."""
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
        self._tokens: dict[tuple[str, str, str, int], str] = {}

    def claim(self, claims: Sequence[Claim]) -> list[ClaimStatus]:
        """Claim every event; results are in the order of ``claims``."""
        out: list[ClaimStatus] = []
        for tenant, source, event_id, token, time_ms in claims:
            key = (tenant, source, event_id, claim_day(time_ms))
            held = self._tokens.get(key)
            if held is None:
                self._tokens[key] = token
                out.append(ClaimStatus.NEW)
            else:
                out.append(ClaimStatus.REPLAY if held == token else ClaimStatus.DUPLICATE)
        return out
