"""The contract of a durable idempotency store (the layer behind keyed-state dedup).

A claim says: "event (tenant, source, id) is being counted, by this message".
The store remembers the first claimant's token; later claims get back
whether they are that same message again (a replay after a crash, which must
be counted again because the state that counted it was lost) or another
message carrying the same event (a true duplicate).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple, Protocol


class Claim(NamedTuple):
    """One event to claim. ``token`` names the claimant: flow instance and message position."""

    tenant: str
    source: str
    id: str
    token: str


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


class MemoryIdempotencyStore:
    """In-process store with the same semantics (for single-process runs and tests)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], str] = {}

    def claim(self, claims: Sequence[Claim]) -> list[ClaimStatus]:
        """Claim every event; results are in the order of ``claims``."""
        out: list[ClaimStatus] = []
        for tenant, source, event_id, token in claims:
            key = (tenant, source, event_id)
            held = self._tokens.get(key)
            if held is None:
                self._tokens[key] = token
                out.append(ClaimStatus.NEW)
            else:
                out.append(ClaimStatus.REPLAY if held == token else ClaimStatus.DUPLICATE)
        return out
