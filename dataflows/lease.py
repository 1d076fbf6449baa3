"""One writer at a time: the flow's output lease, its heartbeat and the write guard.

The primary process takes the lease (``sinks.redis_lease``) before it touches
any output, renews it every third of ``flow.lease_ttl`` and gives it up when
the run ends. Writes are fenced two ways:

* Redis writes (idempotency claims, live counters) carry the lease's fence into
  their Lua scripts, which refuse to write once another flow holds the lease.
* ClickHouse and Kafka writes cannot check Redis atomically, so ``check`` runs
  before each flush: it passes only while the last renewal was sent less than
  two thirds of the TTL ago (the lease then has a third of it left), and waits
  while unsure (Redis unreachable). Residual window: a process paused after
  ``check`` passed and before its write completed, for longer than the third of
  the TTL left, writes once after the lease may have passed on.

Once the lease is found lost (a Redis write refused, or a renewal finding it
gone) the CLI's ``on_lost`` prints one line and exits at once with code 3, like
a crash: nothing more is written, not even the buffers a clean stop would flush; with recovery
the next run resumes from the last snapshot. (Raising instead would let the
engine print a panic and flush its sinks on the way out.)

Without Redis there is no lease: chDB allows one process per data path, and a
ClickHouse server is only used if ``flow.single_writer_unchecked`` says the
operator makes sure that one flow runs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from redis.exceptions import AuthenticationError, RedisError

from config.clock import Clock
from config.display import iso_utc
from config.errors import ConfigError
from config.redaction import redact_url
from config.settings import Settings
from sinks.redis_client import redis_from_url
from sinks.redis_lease import Fence, Holder, LeaseHeld, LeaseSuperseded, RedisLease

log = logging.getLogger(__name__)

# Exit code of a run refused because another flow holds the lease.
REFUSED = 2
# Exit code of a run that lost its lease (as of any run stopped by a failure).
LOST = 3


class LeaseRefused(RuntimeError):
    """Another flow holds the lease; the message is the one line to print."""


class LeaseKeeper:
    """Renews a held lease in a thread and tells the sinks whether they may write."""

    def __init__(
        self,
        lease: RedisLease,
        holder: Holder,
        confirmed: float,
        what: str,
        on_lost: Callable[[str], NoReturn],
    ) -> None:
        self.holder = holder
        self._on_lost = on_lost
        self._lease = lease
        self._what = what
        ttl_s = lease.ttl_ms / 1000
        self._interval_s = ttl_s / 3
        # A renewal sent this recently leaves the lease at least ttl / 3 to run.
        self._fresh_s = ttl_s * 2 / 3
        self._confirmed = confirmed
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="meterwax-lease", daemon=True)

    @property
    def fence(self) -> Fence:
        """What the fenced Redis writers send their scripts, and how they stop when refused."""
        return Fence(self.holder.fence, self.exit_lost)

    def check(self) -> None:
        """Return while the lease surely holds.

        Waits while the last renewal is too old to be sure (Redis unreachable, or
        this process was paused) until a renewal succeeds; a renewal that finds
        the lease lost exits the process instead.
        """
        with self._changed:
            while time.monotonic() - self._confirmed >= self._fresh_s:
                self._changed.wait(self._interval_s)

    def exit_lost(self, detail: str) -> NoReturn:
        """Hand the one lease-lost line to ``on_lost``, which ends the process at once."""
        log.debug("lease lost: %s", detail)
        self._on_lost(
            f"lease lost: the lease for {self._what} expired or another flow "
            "took it over (this process was paused or cut off from Redis for longer than "
            f"flow.lease_ttl, {self._lease.ttl_ms / 1000:g}s); it stopped without writing "
            f"more (exit code {LOST}); the flow holding the lease goes on"
        )

    def _beat(self) -> None:
        while not self._stopping.wait(self._interval_s):
            sent = time.monotonic()
            try:
                held = self._lease.extend()
            except RedisError as exc:
                log.warning("cannot renew the lease for %s: %s", self._what, type(exc).__name__)
                continue
            if not held:
                self.exit_lost("a renewal found it gone")
            with self._changed:
                self._confirmed = sent
                self._changed.notify_all()

    def start(self) -> None:
        """Start renewing."""
        self._thread.start()

    def close(self) -> None:
        """Stop renewing and give the lease up."""
        self._stopping.set()
        self._thread.join()
        try:
            self._lease.release()
        except RedisError as exc:
            log.warning("cannot release the lease for %s: %s", self._what, type(exc).__name__)


def clickhouse_target(dsn: str, database: str) -> str:
    """Where a flow writes ClickHouse rows, without credentials: a server or a chDB path."""
    parts = urlsplit(dsn)
    if parts.scheme.lower() == "chdb":
        path = Path(dsn[len("chdb://") :]).expanduser().resolve()
        return f"chdb:{path} database {database}"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''} database {database}"


def check_single_writer(settings: Settings) -> None:
    """Refuse a ClickHouse server without a lease unless the operator vouches for one flow."""
    scheme = urlsplit(settings.clickhouse.dsn.get_secret_value()).scheme.lower()
    if scheme == "chdb" or settings.redis.url is not None or settings.flow.single_writer_unchecked:
        return
    raise ConfigError(
        "clickhouse.dsn: a ClickHouse server without redis.url has no lease, so nothing "
        "stops a second flow from writing the same tables; set redis.url, or set "
        "flow.single_writer_unchecked: true if you make sure only one flow runs"
    )


@contextmanager
def output_lease(
    settings: Settings,
    instance: str,
    clock: Clock,
    on_lost: Callable[[str], NoReturn],
    *,
    resuming: bool = False,
) -> Iterator[LeaseKeeper | None]:
    """Hold the lease of this flow's outputs while inside (None: no lease to hold).

    Only the primary process takes it (it owns the sinks). Raises ``LeaseRefused``
    when another flow holds it. ``on_lost`` gets the one line to tell when the lease
    is found lost, and must end the process at once (exit code ``LOST``).
    ``resuming`` (from recovery state): refused when another flow took the lease
    since this instance last held it.
    """
    check_single_writer(settings)
    r = settings.redis
    if r.url is None or not settings.flow.is_primary:
        yield None
        return
    url = r.url.get_secret_value()
    password = r.password()
    try:
        client = redis_from_url(url, password)
    except ValueError as exc:
        raise ConfigError(f"redis.url: {exc}") from None
    what = f"the outputs under Redis prefix {r.key_prefix!r} at {redact_url(url)}"
    lease = RedisLease(client, r.key_prefix, instance, settings.flow.lease_ttl)
    ch = settings.clickhouse
    target = clickhouse_target(ch.dsn.get_secret_value(), ch.database)
    sent = time.monotonic()
    try:
        holder = lease.acquire(clock.now_ms(), target, resuming=resuming)
    except LeaseSuperseded as superseded:
        raise LeaseRefused(
            f"another flow (instance {superseded.instance}) wrote {what} after this "
            f"recovery state (instance {instance}) was saved; resuming it would price "
            "billing periods without that flow's usage. Start without this recovery "
            "directory (a new flow is seeded from ClickHouse); its open windows are lost "
            "(see README, 'Several flows and recovery directories')"
        ) from None
    except LeaseHeld as held:
        other = held.holder
        raise LeaseRefused(
            f"another flow (instance {other.instance}, started {iso_utc(other.started_ms)}, "
            f"writing {other.target}) holds the lease for {what}; stop it, or wait "
            f"{math.ceil(held.remaining_ms / 1000)}s for its lease to expire if it crashed"
        ) from None
    except AuthenticationError:
        raise ConfigError(
            "redis.url: Redis refused the credentials: fix the password in redis.url "
            "or redis.password_file"
        ) from None
    except RedisError as exc:
        raise ConfigError(
            f"redis.url: cannot take the output lease at {redact_url(url)} "
            f"({type(exc).__name__}); check the address, or start local services with "
            "`meterwax services start`"
        ) from None
    keeper = LeaseKeeper(lease, holder, sent, what, on_lost)
    keeper.start()
    try:
        yield keeper
    finally:
        keeper.close()
        client.close()
