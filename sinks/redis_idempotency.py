"""Redis idempotency store: the durable dedup layer behind the flow's keyed state.

It catches duplicates older than the in-flow state horizon, across restarts
and across replays. Semantics are those of ``operators.idempotency``: the
first claim of (tenant, source, id) stores its token and is NEW; a later claim
with the same token is the same message replayed (REPLAY, and the key's TTL is
refreshed); with another token it is a true duplicate (DUPLICATE).

Key layout (a public contract: operators may SCAN, inspect or delete keys)::

    {prefix}:idem:{len(tenant)}:{tenant}:{len(source)}:{source}:{id}

Lengths count characters (Python ``len``), written in decimal. The length
prefixes make the key unambiguous whatever the parts contain (tenant ``a:1``
with source ``b`` and tenant ``a`` with source ``1:b`` are different keys) and
keep every tenant's keys under one SCAN pattern, ``tenant_key_pattern``. The
value is the token of the first claimant, the key expires ``ttl_s`` seconds
after its last claim by that token. Keys and tokens are stored as UTF-8 (lone
surrogates, which the standard JSON parser lets through, are kept as is).

One round trip per chunk of ``chunk_size`` claims (an atomic Lua script, by
EVALSHA with a NOSCRIPT fallback). A batch touches keys in many hash slots, so
this needs a single Redis primary (with replicas or Sentinel), not Redis
Cluster.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TypedDict, Unpack

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    OutOfMemoryError,
    RedisError,
)
from redis.retry import Retry

from config.redaction import redact_url
from operators.idempotency import Claim, ClaimStatus
from sinks.redis_client import redis_from_url
from sinks.redis_keys import lease_key
from sinks.redis_lease import Fence, fence_check
from sinks.retry import redis_transient as _is_transient

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 35 * 86_400
DEFAULT_CHUNK_SIZE = 5_000

# KEYS[1] is the lease and ARGV[1] the fence (see sinks.redis_lease), KEYS[i]
# (i > 1) a claim's key, ARGV[2] the TTL, ARGV[i + 1] the claim's token. The
# reply is one digit per claim (a ClaimStatus value): one bulk string is far
# cheaper to send and parse than an array of thousands of integers. 'L': the
# lease is lost, nothing was claimed.
_CLAIM_SCRIPT = (
    fence_check("'L'")
    + """
local ttl = ARGV[2]
local out = {}
for i = 2, #KEYS do
  local key, token = KEYS[i], ARGV[i + 1]
  if redis.call('SET', key, token, 'NX', 'EX', ttl) then
    out[i - 1] = '0'
  elseif redis.call('GET', key) == token then
    redis.call('EXPIRE', key, ttl)
    out[i - 1] = '1'
  else
    out[i - 1] = '2'
  end
end
return table.concat(out)
"""
)

_STATUS_BY_DIGIT = {str(int(status)): status for status in ClaimStatus}

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class IdempotencyError(RuntimeError):
    """The store cannot work as configured (credentials, permissions, key clash, memory).

    The message never contains a password.
    """


class IdempotencyUnavailable(IdempotencyError):
    """Redis stayed unreachable for longer than ``max_wait_s``."""


class StoreOptions(TypedDict, total=False):
    """Keyword options of ``RedisIdempotencyStore`` (for ``from_url``)."""

    ttl_s: int
    key_prefix: str
    retry_initial_s: float
    retry_max_s: float
    max_wait_s: float | None
    sleep: Callable[[float], None]
    chunk_size: int
    on_failure: Callable[[], None] | None


def idempotency_key(prefix: str, tenant: str, source: str, id: str) -> str:
    """The Redis key of one event (the documented layout).

    ``{prefix}:idem:{len(tenant)}:{tenant}:{len(source)}:{source}:{id}``, lengths
    in characters, so the key is unambiguous when parts contain ':'.
    """
    return f"{prefix}:idem:{len(tenant)}:{tenant}:{len(source)}:{source}:{id}"


def tenant_key_pattern(prefix: str, tenant: str) -> str:
    """A SCAN MATCH pattern for every key of ``tenant`` (glob characters escaped)."""
    return f"{_glob_escape(prefix)}:idem:{len(tenant)}:{_glob_escape(tenant)}:*"


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _encode(text: str) -> bytes:
    # surrogatepass: a lone surrogate must not make the claim (and the flow) fail.
    return text.encode("utf-8", "surrogatepass")


class RedisIdempotencyStore:
    """``IdempotencyStore`` on Redis: one atomic script call per chunk of claims.

    Outages (connection lost, timeouts, server loading, read-only during
    failover) are retried with exponential backoff, forever unless
    ``max_wait_s`` is set; other errors raise ``IdempotencyError`` at once.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        key_prefix: str = "meterwax",
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        max_wait_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, got {ttl_s}")
        if not key_prefix:
            raise ValueError("key_prefix must not be empty")
        if not 0 < retry_initial_s <= retry_max_s:
            raise ValueError(
                "need 0 < retry_initial_s <= retry_max_s, "
                f"got retry_initial_s={retry_initial_s}, retry_max_s={retry_max_s}"
            )
        if max_wait_s is not None and max_wait_s < 0:
            raise ValueError(f"max_wait_s must be None or >= 0, got {max_wait_s}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self._client = client
        self._script = client.register_script(_CLAIM_SCRIPT)
        self._ttl = str(ttl_s).encode()
        self._prefix = key_prefix
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._max_wait_s = max_wait_s
        self._sleep = sleep
        self._chunk_size = chunk_size
        # Told of every failed attempt (a metric), while claims keep retrying.
        self.on_failure = on_failure or (lambda: None)
        # Claims are refused unless the flow still holds its output lease.
        self.fence = Fence()
        self._lease_key = _encode(lease_key(key_prefix))
        kwargs = client.connection_pool.connection_kwargs
        self._address = _address(kwargs)
        password = kwargs.get("password")
        self._password = password if isinstance(password, str) and password else None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        socket_timeout_s: float = 10.0,
        **options: Unpack[StoreOptions],
    ) -> RedisIdempotencyStore:
        """A store on ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://``, ``unix://``).

        The client fails fast (one immediate reconnect, then ``socket_timeout_s``
        at most per call) so that outages reach the store's logged backoff.
        """
        client = redis_from_url(url, password, socket_timeout_s, retry=Retry(NoBackoff(), 1))
        return cls(client, **options)

    def ping(self) -> None:
        """Check once, without retrying, that Redis answers and may run the claim script.

        Raises ``IdempotencyUnavailable`` if it is unreachable, ``IdempotencyError``
        for credentials or permissions.
        """
        try:
            self._client.ping()
            self._client.script_load(_CLAIM_SCRIPT)
        except RedisError as exc:
            if _is_transient(exc):
                raise IdempotencyUnavailable(
                    f"Redis at {self._address} is unavailable: {self._describe(exc)}"
                ) from exc
            raise self._permanent(exc, "ping") from exc

    def claim(self, claims: Sequence[Claim]) -> list[ClaimStatus]:
        """Claim every event; results are in the order of ``claims``.

        Blocks while Redis is unavailable (see ``max_wait_s``).
        """
        out: list[ClaimStatus] = []
        for start in range(0, len(claims), self._chunk_size):
            out.extend(self._claim_chunk(claims[start : start + self._chunk_size]))
        return out

    def _claim_chunk(self, chunk: Sequence[Claim]) -> list[ClaimStatus]:
        prefix = self._prefix
        keys = [_encode(idempotency_key(prefix, c.tenant, c.source, c.id)) for c in chunk]
        args = [_encode(self.fence.token), self._ttl, *(_encode(c.token) for c in chunk)]
        reply = self._run(keys, args)
        digits = reply.decode() if isinstance(reply, bytes) else str(reply)
        if digits == "L":
            self.fence.lost(f"Redis at {self._address} refused {len(chunk)} claims")
        if len(digits) != len(chunk):
            raise IdempotencyError(
                f"Redis at {self._address} answered {len(digits)} results "
                f"for {len(chunk)} claims; is another script loaded under the same SHA?"
            )
        return [_STATUS_BY_DIGIT[d] for d in digits]

    def _run(self, keys: list[bytes], args: list[bytes]) -> object:
        """Run the claim script, waiting out outages.

        Retrying blindly is safe even when the outcome of an attempt is unknown:
        the script is atomic, and re-running it after it did run turns our own
        NEW claims into REPLAY (same token), which the flow counts just the same;
        claims that were DUPLICATE stay DUPLICATE.
        """
        failures = 0
        first_failure = 0.0
        delay = self._retry_initial_s
        while True:
            try:
                reply = self._script(keys=[self._lease_key, *keys], args=args)
            except RedisError as exc:
                self.on_failure()
                if not _is_transient(exc):
                    raise self._permanent(exc, f"claim of {len(keys)} events") from exc
                now = time.monotonic()
                if failures == 0:
                    first_failure = now
                failures += 1
                waited = now - first_failure
                if self._max_wait_s is not None:
                    if waited >= self._max_wait_s:
                        raise IdempotencyUnavailable(
                            f"Redis at {self._address} unavailable for {waited:.1f}s "
                            f"({failures} attempts, max_wait_s={self._max_wait_s}); "
                            f"{len(keys)} claims not made: {self._describe(exc)}"
                        ) from exc
                    delay = min(delay, self._max_wait_s - waited)
                log.warning(
                    "Redis at %s unavailable (attempt %d, %.1fs so far), "
                    "retrying %d claims in %.2fs: %s",
                    self._address,
                    failures,
                    waited,
                    len(keys),
                    delay,
                    self._describe(exc),
                )
                self._sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            if failures:
                log.warning(
                    "Redis at %s is back after %d failed attempts (%.1fs)",
                    self._address,
                    failures,
                    time.monotonic() - first_failure,
                )
            return reply

    def _permanent(self, exc: RedisError, action: str) -> IdempotencyError:
        if isinstance(exc, AuthenticationError):
            hint = (
                "Redis refused the credentials: fix the password in redis.url "
                "or redis.password_file"
            )
        elif isinstance(exc, (AuthorizationError, NoPermissionError)):
            hint = "let the Redis user run PING, SCRIPT LOAD, EVALSHA, SET, GET and EXPIRE"
        elif isinstance(exc, OutOfMemoryError):
            hint = "raise maxmemory or lower the idempotency TTL (one key per event for ttl_s)"
        elif "WRONGTYPE" in str(exc):
            hint = (
                f"a key under prefix {self._prefix!r} holds a non-string value; "
                "give the idempotency store a key prefix of its own"
            )
        else:
            hint = "this is not an outage, so it is not retried"
        return IdempotencyError(
            f"{action} in Redis at {self._address} failed: {self._describe(exc)}; {hint}"
        )

    def _describe(self, exc: BaseException) -> str:
        """Error type and first message line, never the password."""
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return redact_url(text)


def _address(kwargs: dict[str, object]) -> str:
    """Where the client connects, from its settings (which never put a password here)."""
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={db}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"
