"""Delivers queued webhooks: signed POSTs, retried with backoff and jitter, logged.

Ordering: each endpoint's messages are delivered in the order they were
queued. While the oldest is being retried, the later ones wait behind it, so a
receiver never sees a hard limit before the threshold that preceded it. A
message still failing ``retry_for`` after it was queued is given up (logged as
``failed``; ``meterwax webhooks redeliver`` queues it again) and the queue
moves on. Delivery is at least once: the message leaves the queue only after
a 2xx answer, so a crash in between sends it again with the same
``webhook-id``.

One dispatcher delivers at a time (a lease in Redis), wherever it runs: a
thread of ``meterwax run`` or ``meterwax webhooks deliver``.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from config.clock import SYSTEM_CLOCK, Clock
from config.redaction import redact_url
from config.webhooks import WebhookSettings
from operators.webhooks import backoff_ms, headers
from sinks.webhook_log import Attempt, WebhookLog
from sinks.webhook_outbox import Pending, WebhookOutbox

log = logging.getLogger(__name__)

LEASE_MS = 30_000
# Deliveries per endpoint per round, so one long queue does not starve the others.
ROUND_LIMIT = 100
# Log rows kept while ClickHouse is away; older ones are dropped (with a warning).
MAX_UNLOGGED = 10_000
WATCH_MS = 60_000

# (url, headers, body, timeout_s) -> (HTTP status or 0, error text or "").
Post = Callable[[str, Mapping[str, str], bytes, float], tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Target:
    """An endpoint as the dispatcher needs it: its secret read once, at start-up."""

    name: str
    url: str
    # Out of repr: a Target in a log line or a traceback must not show it.
    secret: str = field(repr=False)


def post(url: str, head: Mapping[str, str], body: bytes, timeout_s: float) -> tuple[int, str]:
    """POST ``body``; the HTTP status (0: no answer) and a one-line error, secrets masked.

    ``timeout_s`` bounds the whole attempt, not each read: a receiver trickling
    its answer a byte at a time is cut off too. Redirects are not followed (a
    3xx counts as a failed attempt).
    """
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    try:
        conn = kind(parts.hostname or "", parts.port, timeout=timeout_s)
    except ValueError as exc:  # a URL that cannot work: a failed attempt, not a stuck queue
        return 0, redact_url(f"{type(exc).__name__}: {exc}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    expired = threading.Event()

    def cut_off() -> None:
        # Shutting the socket down wakes the read that waits on it.
        expired.set()
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout_s, cut_off)
    watchdog.start()
    try:
        conn.request("POST", path, body=body, headers=dict(head))
        status = conn.getresponse().status
    except (http.client.HTTPException, OSError, ValueError, OverflowError) as exc:
        if expired.is_set():
            return 0, f"TimeoutError: timed out after {timeout_s:g}s"
        return 0, redact_url(f"{type(exc).__name__}: {exc}")
    finally:
        watchdog.cancel()
        conn.close()
    if expired.is_set():
        return 0, f"TimeoutError: timed out after {timeout_s:g}s"
    return status, "" if 200 <= status < 300 else f"HTTP {status}"


class WebhookDispatcher:
    """Works through the outbox's queues; call ``run_once`` or ``run`` on a thread."""

    def __init__(
        self,
        outbox: WebhookOutbox,
        targets: Sequence[Target],
        settings: WebhookSettings,
        log_writer: WebhookLog | None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        send: Post = post,
        rng: random.Random | None = None,
        watch: Callable[[int], object] | None = None,
    ) -> None:
        self._outbox = outbox
        self._targets = list(targets)
        self._settings = settings
        self._log = log_writer
        self._clock = clock
        self._send = send
        self._rng = rng or random.Random()
        self._holder = uuid.uuid4().hex
        # Renewed before each attempt, so it must outlast one that runs into the timeout.
        self._lease_ms = max(LEASE_MS, 2 * settings.timeout + 5_000)
        # Whether the last round held the lease (False: another dispatcher delivers).
        self.leased = False
        self._unlogged: list[Attempt] = []
        # Called with the time at most every WATCH_MS (closed periods are looked for).
        self._watch = watch
        self._watched_ms: int | None = None

    def run_once(self) -> int:
        """Attempt every delivery that is due; returns how many attempts were made."""
        if not self._renew():
            return 0
        now_ms = self._clock.now_ms()
        if self._watch is not None and (
            self._watched_ms is None or now_ms - self._watched_ms >= WATCH_MS
        ):
            self._watched_ms = now_ms
            self._watch(now_ms)
        attempts = 0
        for target in self._targets:
            for _ in range(ROUND_LIMIT):
                pending = self._outbox.head(target.name)
                if pending is None or pending.next_ms > self._clock.now_ms():
                    break
                if not self._renew():
                    self._flush_log()
                    return attempts  # another dispatcher took over: it delivers from here
                attempts += 1
                if not self._attempt(target, pending):
                    break  # it is the head again, not due yet: later ones wait
        self._flush_log()
        return attempts

    def run(self, stop: threading.Event, idle_s: float = 0.5) -> None:
        """Deliver until ``stop`` is set; a failing Redis or receiver is waited out."""
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception as exc:  # Redis away: keep the thread alive and try again
                log.warning("webhook dispatcher: %s; retrying", redact_url(str(exc)))
                busy = 0
            if not busy:
                stop.wait(idle_s)
        self.close()

    def close(self) -> None:
        """Give up the lease and write what the log still holds."""
        self._outbox.release(self._holder)
        self._flush_log()

    def _renew(self) -> bool:
        self.leased = self._outbox.acquire(self._holder, self._lease_ms)
        return self.leased

    def _attempt(self, target: Target, pending: Pending) -> bool:
        now_ms = self._clock.now_ms()
        timestamp_s = now_ms // 1000
        head = headers(target.secret, pending.msg_id, timestamp_s, pending.body)
        status, error = self._send(
            target.url, head, pending.body.encode(), self._settings.timeout / 1000
        )
        delivered = 200 <= status < 300
        attempt = pending.attempts + 1
        next_ms: int | None = None
        if delivered:
            outcome = "delivered"
            self._outbox.done(pending)
        elif now_ms - pending.created_ms >= self._settings.retry_for:
            outcome = "failed"
            self._outbox.done(pending)
            log.warning(
                "webhook %s to %s given up after %d attempts: %s",
                pending.msg_id,
                target.name,
                attempt,
                error or f"HTTP {status}",
            )
        else:
            outcome = "retrying"
            s = self._settings
            delay = backoff_ms(attempt, s.initial_backoff, s.max_backoff, self._rng)
            # The last attempt falls at the end of the retry period, not past it.
            next_ms = min(now_ms + delay, pending.created_ms + s.retry_for)
            self._outbox.failed_attempt(pending, next_ms)
        self._unlogged.append(
            Attempt(
                pending.msg_id,
                target.name,
                pending.type,
                pending.tenant,
                attempt,
                outcome,
                status,
                error if not delivered else "",
                now_ms,
                next_ms,
                pending.created_ms,
                pending.body,
            )
        )
        return delivered

    def _flush_log(self) -> None:
        if self._log is None or not self._unlogged:
            return
        try:
            self._log.write(self._unlogged)
        except Exception as exc:  # ClickHouse away: keep the rows for the next round
            log.warning("webhook log: cannot write to ClickHouse (%s); will retry", exc)
            dropped = len(self._unlogged) - MAX_UNLOGGED
            if dropped > 0:
                log.warning("webhook log: dropping %d oldest rows", dropped)
                del self._unlogged[:dropped]
            return
        self._unlogged = []
