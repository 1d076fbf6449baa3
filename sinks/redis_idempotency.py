"""Redis idempotency store: the durable dedup layer behind the flow's keyed state.

It catches duplicates older than the in-flow state horizon, across restarts
and across replays. Semantics are those of ``operators.idempotency``: the
first claim of (tenant, source, id) on a UTC day of event time stores its
token and is NEW; a later claim with the same token is the same message
replayed (REPLAY); with another token it is a true duplicate (DUPLICATE).

Layout (a public contract: operators may SCAN, inspect or delete keys). Claims
of events whose time falls on one UTC day live in that day's buckets::

    {prefix}:idem-day:{YYYY-MM-DD}        how many claims the day holds (a string)
    {prefix}:idem-day:{YYYY-MM-DD}:{n}    a HASH: field = key_hash, value = token_tag

``key_hash`` is the native core's xxh3-128 of the idempotency key (16 bytes),
``token_tag`` 8 bytes of the claimant's token (see ``operators.idempotency``).
A day grows its buckets by linear hashing: bucket ``n`` is picked from the key
hash's first four bytes and the day's count, and every ``_SPLIT_EVERY`` claims
one bucket splits in two, so buckets hold ~40 fields on average and stay in
Redis's compact listpack encoding (default ``hash-max-listpack-entries`` 128):
~30 bytes per claim instead of ~250 for a key per event.

Expiry: a claim is remembered at least ``ttl_s`` after its last NEW or REPLAY
claim, and at most ``ttl_s`` plus a slack (``refresh_slack_s``: a 24th of the
TTL, at most an hour) after the day's last claim (in-order traffic: about a
day more). Setting a bucket's TTL on every claim would cost a command per
claim; instead every claimed day is swept, bucket by bucket over a few calls,
setting each bucket's TTL to ``ttl_s`` plus the slack, and a sweep starts
again before the slack has passed. A claim sets its bucket's TTL itself only
when its bucket is not covered by the current sweep (not swept yet, the sweep
too old, a bucket split off since). The sweep's start (Redis's own clock, on
which TTLs count) and progress are kept in

    {prefix}:idem-sweep:{YYYY-MM-DD}  "{started_s} {next bucket}"

Deleting a day count while its buckets live breaks lookups of that day:
delete a day's keys together.

The layout before (one string key per event,
``{prefix}:idem:{len(tenant)}:{tenant}:{len(source)}:{source}:{id}`` holding the
token) is still read after an upgrade: the first start under a prefix looks for
such keys (``ping``); if there are any, a claim the day buckets do not know is
looked up there too for ``ttl_s`` (no key of the old layout outlives that), a
replay found there moves to the day bucket, and nothing new is written there.

One round trip per chunk of ``chunk_size`` claims (an atomic Lua script, by
EVALSHA with a NOSCRIPT fallback). The script touches keys it computes, in
many hash slots, so this needs a single Redis primary (with replicas or
Sentinel), not Redis Cluster.
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
from operators.idempotency import (
    RECORD_BYTES,
    Claim,
    ClaimStatus,
    claim_date,
    pack_claims,
)
from sinks.redis_client import redis_from_url
from sinks.redis_keys import lease_key
from sinks.redis_lease import Fence, fence_check
from sinks.retry import redis_transient as _is_transient

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 35 * 86_400
DEFAULT_CHUNK_SIZE = 5_000
# A day's claims per bucket, on average, before one more bucket splits off:
# unsplit buckets hold up to twice as many, well under listpack's 128 entries.
_SPLIT_EVERY = 40
# Buckets a call sweeps per day it claims in (see Expiry above).
_SWEEP_STEP = 500
# The sweep's slack: a 24th of the TTL, at most an hour.
_MAX_SLACK_S = 3_600


def refresh_slack_s(ttl_s: int) -> int:
    """How much longer than ``ttl_s`` a bucket may live (0: TTL set on every claim)."""
    return min(_MAX_SLACK_S, ttl_s // 24)


# KEYS[1] is the lease and ARGV[1] the fence (see sinks.redis_lease), ARGV[2]
# the TTL, ARGV[3] '1' to look up the old layout too, ARGV[4] the key base
# ('{prefix}:idem-day:'), ARGV[5] the claims packed (operators.idempotency
# .pack_claims: date, key hash, token tag), ARGV[6] the sweep's slack in
# seconds; with the old layout, then per claim its old key and token. The
# reply is one digit per claim (a ClaimStatus value): one bulk string is far
# cheaper to send and parse than an array of thousands of integers. 'L': the
# lease is lost, nothing was claimed.
_CLAIM_SCRIPT = (
    fence_check("'L'")
    + """
local ttl, legacy, base, packed = ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5]
local slack = tonumber(ARGV[6])
local keep = tonumber(ttl) + slack
local every, size, sweep_step = $SPLIT_EVERY, $RECORD_BYTES, $SWEEP_STEP
local call, sub, byte, floor = redis.call, string.sub, string.byte, math.floor
local now = tonumber(call('TIME')[1])
-- '{prefix}:idem-sweep:' from '{prefix}:idem-day:'
local sweeps = sub(base, 1, #base - #'idem-day:') .. 'idem-sweep:'
-- Per day seen: its count, m buckets, p (the largest power of two <= m), the
-- names of its buckets by number (built once: a number in a concatenation is
-- formatted by sprintf), whether it grew or counted an event, and its sweep:
-- buckets below s.swept have a TTL of at least keep from s.since on.
local days, touched, out = {}, {}, {}

local function bits(field)
  local a, b, c, d = byte(field, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local function name(s, n)
  local key = s.names[n]
  if key == nil then
    key = s.base .. n
    s.names[n] = key
  end
  return key
end
-- Linear hashing: m buckets are 0..m-1; those below m - p are split already.
local function buckets(s)
  local m, p = floor(s.count / every) + 1, s.p
  while p * 2 <= m do p = p * 2 end
  s.m, s.p = m, p
end
-- m -> m + 1 buckets: bucket m - p gives bucket m the fields that now go there.
local function split(s)
  local m, p = s.m, s.p
  local from, to = name(s, m - p), name(s, m)
  local fields = call('HGETALL', from)
  local moved, names = {}, {}
  for j = 1, #fields, 2 do
    -- '' is a placeholder (below), not a claim: it stays.
    if #fields[j] == 16 and bits(fields[j]) % (2 * p) == m then
      moved[#moved + 1] = fields[j]
      moved[#moved + 1] = fields[j + 1]
      names[#names + 1] = fields[j]
    end
  end
  -- Neither bucket may be left without a key: HSETNX would create it later
  -- without a TTL, where a sweep may already count it as swept.
  if #names == 0 then
    moved = {'', ''}
  end
  if #names * 2 == #fields then
    call('HSET', from, '', '')
  end
  call('HSET', to, unpack(moved))
  if #names > 0 then call('HDEL', from, unpack(names)) end
  touched[to], touched[from] = true, true
end

for k = 0, #packed / size - 1 do
  local at = k * size
  local day = sub(packed, at + 1, at + 10)
  local field = sub(packed, at + 11, at + 26)
  local token = sub(packed, at + 27, at + size)
  local s = days[day]
  if s == nil then
    s = {count = tonumber(call('GET', base .. day) or '0'), p = 1, names = {},
         base = base .. day .. ':', grown = false, live = false, since = -1, swept = 0}
    local sweep = call('GET', sweeps .. day)
    if sweep then
      local since, swept = string.match(sweep, '^(%d+) (%d+)$')
      s.since, s.swept = tonumber(since) or -1, tonumber(swept) or 0
    end
    -- A sweep of a day whose count is gone (its keys deleted) covers nothing.
    s.covered = s.count > 0 and now >= s.since and now - s.since < slack
    buckets(s)
    days[day] = s
  end
  -- bits(field) and name(s, n), inline: this loop runs once per claim.
  local b1, b2, b3, b4 = byte(packed, at + 11, at + 14)
  local h, p = ((b1 * 256 + b2) * 256 + b3) * 256 + b4, s.p
  local n = h % p
  if n < s.m - p then n = h % (2 * p) end
  local key = s.names[n]
  if key == nil then
    key = s.base .. n
    s.names[n] = key
  end
  -- HSETNX first: one command for the common case, a new claim.
  local status, inserted = '2', false
  if legacy then
    local held = call('HGET', key, field)
    if held == token then
      status = '1'
    elseif not held then
      local old = call('GET', ARGV[7 + 2 * k])
      if old == ARGV[8 + 2 * k] then status = '1' elseif not old then status = '0' end
      if status ~= '2' then
        call('HSET', key, field, token)
        inserted = true
      end
    end
  elseif call('HSETNX', key, field, token) == 1 then
    status, inserted = '0', true
  elseif call('HGET', key, field) == token then
    status = '1'
  end
  if inserted then
    s.count, s.grown = s.count + 1, true
    -- The number of buckets changes only here, when a bucket splits off.
    if s.count % every == 0 then
      split(s)
      buckets(s)
    end
  end
  if status ~= '2' then
    s.live = true
    if not (s.covered and n < s.swept) then touched[key] = true end
  end
  out[k + 1] = status
end
for day, s in pairs(days) do
  if s.live then
    -- A sweep that is over and half the slack old, or no longer covering, starts again.
    local restart = not s.covered or (s.swept >= s.m and now - s.since >= slack / 2)
    if restart then
      s.since, s.swept = now, 0
    end
    if s.grown then
      call('SET', base .. day, s.count, 'EX', keep)
    elseif restart then
      call('EXPIRE', base .. day, keep)
    end
    if slack > 0 and s.swept < s.m then
      local last = math.min(s.m, s.swept + sweep_step) - 1
      for n = s.swept, last do
        local key = name(s, n)
        -- A bucket that is gone (an operator's HDEL of its last claim) gets a
        -- placeholder: HSETNX must never make it again without a TTL.
        if not touched[key] and call('EXPIRE', key, keep) == 0 then
          call('HSET', key, '', '')
          call('EXPIRE', key, keep)
        end
      end
      s.swept = last + 1
    end
    if slack > 0 then
      call('SET', sweeps .. day, s.since .. ' ' .. s.swept, 'EX', keep)
    end
  end
end
for key in pairs(touched) do
  call('EXPIRE', key, keep)
end
return table.concat(out)
""".replace("$SPLIT_EVERY", str(_SPLIT_EVERY))
    .replace("$RECORD_BYTES", str(RECORD_BYTES))
    .replace("$SWEEP_STEP", str(_SWEEP_STEP))
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


def day_key(prefix: str, day: int) -> str:
    """The key of a day's claim count; its buckets are ``{day_key}:{n}``.

    ``day`` counts days since 1970-01-01 (``operators.idempotency.claim_day``).
    """
    return f"{prefix}:idem-day:{claim_date(day)}"


def legacy_key(prefix: str, tenant: str, source: str, id: str) -> str:
    """The key of one event in the layout before day buckets (still read after an upgrade).

    ``{prefix}:idem:{len(tenant)}:{tenant}:{len(source)}:{source}:{id}``, lengths
    in characters, so the key is unambiguous when parts contain ':'.
    """
    return f"{prefix}:idem:{len(tenant)}:{tenant}:{len(source)}:{source}:{id}"


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
        self._slack = str(refresh_slack_s(ttl_s)).encode()
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
        self._base = _encode(f"{key_prefix}:idem-day:")
        self._ttl_s = ttl_s
        # Until when (time.monotonic) claims also look up the old layout; see ping().
        self._legacy_until = 0.0
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

        Also learns whether keys of the old layout (one key per event) may still
        exist under the prefix; claims then look them up too, for ``ttl_s``. The
        first start under a prefix SCANs for them, once; later starts read what
        it found. Raises ``IdempotencyUnavailable`` if Redis is unreachable,
        ``IdempotencyError`` for credentials or permissions.
        """
        try:
            self._client.ping()
            self._client.script_load(_CLAIM_SCRIPT)
            remaining_ms = self._legacy_remaining_ms()
        except RedisError as exc:
            if _is_transient(exc):
                raise IdempotencyUnavailable(
                    f"Redis at {self._address} is unavailable: {self._describe(exc)}"
                ) from exc
            raise self._permanent(exc, "ping") from exc
        if remaining_ms > 0:
            self._legacy_until = time.monotonic() + remaining_ms / 1000
            log.info(
                "Redis at %s holds idempotency keys of the old layout: claims look them "
                "up too for %.1f more days",
                self._address,
                remaining_ms / 86_400_000,
            )

    def _legacy_remaining_ms(self) -> int:
        """How long keys of the old layout may live on under the prefix, in ms (0: none)."""
        prefix, client = self._prefix, self._client
        marker, checked = f"{prefix}:idem-legacy", f"{prefix}:idem-layout"
        if not client.exists(checked):
            pattern = f"{_glob_escape(prefix)}:idem:*"
            if next(iter(client.scan_iter(match=pattern, count=1_000)), None) is not None:
                # No key of the old layout outlives its TTL: nothing writes them any more.
                client.set(marker, b"1", ex=self._ttl_s)
            client.set(checked, b"day-buckets")
        remaining = client.pttl(marker)
        return remaining if isinstance(remaining, int) and remaining > 0 else 0

    def claim(self, claims: Sequence[Claim]) -> list[ClaimStatus]:
        """Claim every event; results are in the order of ``claims``.

        Blocks while Redis is unavailable (see ``max_wait_s``).
        """
        digits = self.claim_packed(pack_claims(claims), lambda: claims)
        return [_STATUS_BY_DIGIT[d] for d in digits.decode()]

    def claim_packed(self, records: bytes, claims: Callable[[], Sequence[Claim]]) -> bytes:
        """Claim packed ``records`` (``pack_claims``); one ClaimStatus digit each, in order.

        ``claims`` (the same claims, unpacked) is called only while keys of the
        old layout may exist. Blocks while Redis is unavailable (see ``max_wait_s``).
        """
        legacy = time.monotonic() < self._legacy_until
        unpacked = claims() if legacy else ()
        step = self._chunk_size * RECORD_BYTES
        out = []
        for start in range(0, len(records), step):
            chunk = records[start : start + step]
            first = start // RECORD_BYTES
            old = unpacked[first : first + len(chunk) // RECORD_BYTES]
            out.append(self._claim_chunk(chunk, old, legacy))
        return b"".join(out)

    def start_claim_packed(
        self, records: bytes, claims: Callable[[], Sequence[Claim]]
    ) -> Callable[[], bytes]:
        """Send the claim script now; the returned call reads its digits.

        The caller works on while Redis runs the script. Anything else - keys of
        the old layout still looked up, more than a chunk, a connection that
        fails, the script not loaded yet - is claimed by ``claim_packed`` when
        the digits are asked for, with its retries: running the script again
        after it ran is safe (see ``_run``).
        """
        count = len(records) // RECORD_BYTES
        if not 0 < count <= self._chunk_size or time.monotonic() < self._legacy_until:
            return lambda: self.claim_packed(records, claims)
        pool = self._client.connection_pool
        try:
            connection = pool.get_connection()
        except RedisError:
            return lambda: self.claim_packed(records, claims)
        try:
            # redis-py's connections are untyped.
            connection.send_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self._script.sha, 1, self._lease_key, *self._args(records, (), False)
            )
        except BaseException as exc:
            # Whatever was sent may be half a command: the connection goes.
            connection.disconnect()  # type: ignore[no-untyped-call]
            pool.release(connection)
            if not isinstance(exc, RedisError):
                raise
            return lambda: self.claim_packed(records, claims)

        def digits() -> bytes:
            reply: object = None
            try:
                reply = connection.read_response()
            except BaseException as exc:
                # The reply may still come: the next command must not read it as its own.
                connection.disconnect()  # type: ignore[no-untyped-call]
                if not isinstance(exc, RedisError):
                    raise
            finally:
                pool.release(connection)
            if reply is None:
                return self.claim_packed(records, claims)
            return self._digits(reply, count)

        return digits

    def _claim_chunk(self, records: bytes, claims: Sequence[Claim], legacy: bool) -> bytes:
        count = len(records) // RECORD_BYTES
        return self._digits(self._run(self._args(records, claims, legacy), count), count)

    def _args(self, records: bytes, claims: Sequence[Claim], legacy: bool) -> list[bytes]:
        """The script's ARGV (see ``_CLAIM_SCRIPT``)."""
        args = [
            _encode(self.fence.token),
            self._ttl,
            b"1" if legacy else b"0",
            self._base,
            records,
            self._slack,
        ]
        if legacy:
            prefix = self._prefix
            for c in claims:
                args += (_encode(legacy_key(prefix, c.tenant, c.source, c.id)), _encode(c.token))
        return args

    def _digits(self, reply: object, count: int) -> bytes:
        """The script's reply, checked: ``count`` digits (or the lease is lost)."""
        digits = reply if isinstance(reply, bytes) else str(reply).encode()
        if digits == b"L":
            self.fence.lost(f"Redis at {self._address} refused {count} claims")
        if len(digits) != count:
            raise IdempotencyError(
                f"Redis at {self._address} answered {len(digits)} results "
                f"for {count} claims; is another script loaded under the same SHA?"
            )
        return digits

    def _run(self, args: list[bytes], claims: int) -> object:
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
                reply = self._script(keys=[self._lease_key], args=args)
            except RedisError as exc:
                self.on_failure()
                if not _is_transient(exc):
                    raise self._permanent(exc, f"claim of {claims} events") from exc
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
                            f"{claims} claims not made: {self._describe(exc)}"
                        ) from exc
                    delay = min(delay, self._max_wait_s - waited)
                log.warning(
                    "Redis at %s unavailable (attempt %d, %.1fs so far), "
                    "retrying %d claims in %.2fs: %s",
                    self._address,
                    failures,
                    waited,
                    claims,
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
            hint = (
                "let the Redis user run PING, SCAN, EXISTS, PTTL, SCRIPT LOAD, EVALSHA, "
                "TIME, GET, SET, EXPIRE, HGET, HSET, HSETNX, HDEL and HGETALL"
            )
        elif isinstance(exc, OutOfMemoryError):
            hint = "raise maxmemory or lower the idempotency TTL (~30 bytes per event for ttl_s)"
        elif "WRONGTYPE" in str(exc):
            hint = (
                f"a key under prefix {self._prefix!r} holds a value of another type; "
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
