"""Webhook delivery against a real receiver, real Redis (the queue) and chDB (the log).

The clock is injected and moved by the test: a day of retries runs in seconds.
"""

from __future__ import annotations

import itertools
import random
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import pytest
import redis
from clickhouse_connect.driver.client import Client

from config.webhooks import WebhookEndpoint, WebhookSettings
from operators.live_usage import QuotaEvent
from operators.webhooks import WebhookMessage, quota_message
from sinks.webhook_dispatcher import Target, WebhookDispatcher, post
from sinks.webhook_log import WebhookLog
from sinks.webhook_outbox import WebhookOutbox
from tests.clocks import CLOCK_OFFSETS, DAY_MS, mid_month_clock
from tests.fixtures.webhook_receiver import SECRET, Receiver

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


@dataclass
class MovableClock:
    """A clock the test moves by hand."""

    at_ms: int

    def now_ms(self) -> int:
        return self.at_ms


def _quota_events(start_ms: int, at_ms: int) -> list[QuotaEvent]:
    end_ms = start_ms + 30 * DAY_MS
    return [
        QuotaEvent(
            "acme",
            "tokens",
            start_ms,
            end_ms,
            "threshold",
            Decimal(80),
            Decimal(80),
            Decimal(81),
            at_ms,
        ),
        QuotaEvent(
            "acme",
            "tokens",
            start_ms,
            end_ms,
            "soft_limit",
            Decimal(100),
            None,
            Decimal(101),
            at_ms + 1,
        ),
        QuotaEvent(
            "acme",
            "tokens",
            start_ms,
            end_ms,
            "hard_limit",
            Decimal(150),
            None,
            Decimal(151),
            at_ms + 2,
        ),
    ]


def _setup(
    redis_url: str, receiver: Receiver, ch_client: Client, ch_database: str, clock: MovableClock
) -> tuple[WebhookOutbox, WebhookSettings, WebhookLog]:
    client = redis.Redis.from_url(redis_url)
    outbox = WebhookOutbox(client, f"wh{uuid.uuid4().hex[:8]}")
    settings = WebhookSettings(
        endpoints=[WebhookEndpoint(name="billing", url=receiver.url, secret=SECRET)]
    )
    return outbox, settings, WebhookLog(ch_client, ch_database)


def _dispatcher(
    outbox: WebhookOutbox, settings: WebhookSettings, log: WebhookLog, clock: MovableClock
) -> WebhookDispatcher:
    targets = [Target(e.name, e.url, e.secret_value()) for e in settings.endpoints]
    return WebhookDispatcher(outbox, targets, settings, log, clock=clock, rng=random.Random(3))


def _drain(
    dispatcher: WebhookDispatcher, outbox: WebhookOutbox, clock: MovableClock, limit: int = 200
) -> None:
    """Run rounds, moving the clock to each next due attempt, until the queue is empty."""
    for _ in range(limit):
        dispatcher.run_once()
        head = outbox.head("billing")
        if head is None:
            return
        clock.at_ms = max(clock.at_ms, head.next_ms)
    raise AssertionError("the queue did not drain")


@pytest.mark.parametrize("offset_ms", CLOCK_OFFSETS)
def test_signed_retried_in_order_and_logged(
    redis_url: str,
    webhook_receiver: Receiver,
    ch_client: Client,
    ch_database: str,
    offset_ms: int,
) -> None:
    clock = MovableClock(mid_month_clock(offset_ms).now_ms())
    outbox, settings, log = _setup(redis_url, webhook_receiver, ch_client, ch_database, clock)
    messages = [quota_message(e) for e in _quota_events(clock.at_ms - DAY_MS, clock.at_ms)]
    for message in messages:
        assert outbox.enqueue(message, ["billing"], clock.at_ms) == 1
    # Queued again (a replay after a crash): nothing new.
    assert outbox.enqueue(messages[0], ["billing"], clock.at_ms) == 0
    # Two failures: a dispatcher that let later messages pass would deliver the third first.
    webhook_receiver.fail_first = 2
    started = clock.at_ms

    dispatcher = _dispatcher(outbox, settings, log, clock)
    dispatcher.run_once()
    dispatcher.run_once()
    # A restart: a new dispatcher carries on from the queue in Redis.
    dispatcher.close()
    _drain(_dispatcher(outbox, settings, log, clock), outbox, clock)

    assert webhook_receiver.bad_signatures == 0
    got = webhook_receiver.unique()
    # The documented order: an endpoint's messages arrive in the order they were queued.
    assert [r.msg_id for r in got] == [m.msg_id for m in messages]
    assert [r.payload["type"] for r in got] == [
        "quota.threshold",
        "quota.soft_limit",
        "quota.hard_limit",
    ]
    assert got[2].payload["data"]["level"] == "150"
    # Each attempt carries the clock's time, not the host's.
    assert started // 1000 <= got[0].timestamp_s <= clock.at_ms // 1000
    # 2 failures, each followed by a backoff, before the first success.
    assert webhook_receiver.requests == 2 + 3
    assert clock.at_ms > started
    rows = {a.msg_id: a for a in log.latest(endpoint="billing")}
    assert rows[messages[0].msg_id].status == "delivered"
    assert rows[messages[0].msg_id].attempt == 3
    assert rows[messages[2].msg_id].attempt == 1


def test_retried_for_a_day_then_given_up_and_the_queue_moves_on(
    redis_url: str, webhook_receiver: Receiver, ch_client: Client, ch_database: str
) -> None:
    clock = MovableClock(mid_month_clock(0).now_ms())
    outbox, settings, log = _setup(redis_url, webhook_receiver, ch_client, ch_database, clock)
    events = _quota_events(clock.at_ms - DAY_MS, clock.at_ms)
    stuck, behind = quota_message(events[0]), quota_message(events[1])
    outbox.enqueue(stuck, ["billing"], clock.at_ms)
    outbox.enqueue(behind, ["billing"], clock.at_ms)
    webhook_receiver.fail_first = 10_000
    created = clock.at_ms
    dispatcher = _dispatcher(outbox, settings, log, clock)
    times = []
    while True:
        dispatcher.run_once()
        head = outbox.head("billing")
        assert head is not None
        if head.msg_id != stuck.msg_id:
            break
        times.append(clock.at_ms)
        clock.at_ms = head.next_ms
    # Retried until at least 24 hours (retry_for) after it was queued, never past it.
    assert clock.at_ms - created == settings.retry_for >= DAY_MS
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Exponential backoff with jitter, capped at max_backoff.
    assert gaps[0] < 10_000 and max(gaps) <= settings.max_backoff
    assert any(b > a for a, b in itertools.pairwise(gaps))
    assert len(times) < 100
    failed = log.latest(msg_id=stuck.msg_id)[0]
    assert failed.status == "failed" and failed.http_status == 503
    # The receiver comes back: the message behind is delivered; the given-up one is not.
    webhook_receiver.fail_first = 0
    _drain(dispatcher, outbox, clock)
    assert [r.msg_id for r in webhook_receiver.unique()] == [behind.msg_id]


def test_receiver_down_is_retried_and_errors_name_no_secret(
    redis_url: str, ch_client: Client, ch_database: str
) -> None:
    clock = MovableClock(mid_month_clock(0).now_ms())
    receiver = Receiver(url="http://127.0.0.1:9/hooks")  # discard port: nothing listens
    outbox, settings, log = _setup(redis_url, receiver, ch_client, ch_database, clock)
    message = WebhookMessage("msg_down", "quota.threshold", "acme", clock.at_ms, "{}")
    outbox.enqueue(message, ["billing"], clock.at_ms)
    _dispatcher(outbox, settings, log, clock).run_once()
    head = outbox.head("billing")
    assert head is not None and head.attempts == 1 and head.next_ms > clock.at_ms
    row = log.latest(msg_id="msg_down")[0]
    assert row.status == "retrying" and row.http_status == 0 and row.error
    assert SECRET not in row.error


def test_one_dispatcher_delivers_at_a_time(
    redis_url: str, webhook_receiver: Receiver, ch_client: Client, ch_database: str
) -> None:
    clock = MovableClock(mid_month_clock(0).now_ms())
    outbox, settings, log = _setup(redis_url, webhook_receiver, ch_client, ch_database, clock)
    first, second = (_dispatcher(outbox, settings, log, clock) for _ in range(2))
    assert first.run_once() == 0 and first.leased
    message = WebhookMessage("msg_lease", "quota.threshold", "acme", clock.at_ms, "{}")
    outbox.enqueue(message, ["billing"], clock.at_ms)
    # The second waits while the first holds the lease, so nothing is sent twice.
    assert second.run_once() == 0 and not second.leased
    first.close()
    assert second.run_once() == 1 and second.leased
    assert [r.msg_id for r in webhook_receiver.accepted] == ["msg_lease"]


def test_a_dispatcher_whose_lease_lapsed_mid_attempt_leaves_the_queue_to_its_successor(
    redis_url: str, webhook_receiver: Receiver, ch_client: Client, ch_database: str
) -> None:
    clock = MovableClock(mid_month_clock(0).now_ms())
    outbox, settings, log = _setup(redis_url, webhook_receiver, ch_client, ch_database, clock)
    targets = [Target(e.name, e.url, e.secret_value()) for e in settings.endpoints]
    successor = _dispatcher(outbox, settings, log, clock)
    client = redis.Redis.from_url(redis_url)
    prefix = outbox._prefix
    sends: list[str] = []

    def stalled(
        url: str, head: Mapping[str, str], body: bytes, timeout_s: float
    ) -> tuple[int, str]:
        # The receiver does not answer this attempt until the lease has expired and
        # another dispatcher has taken over and delivered the queue.
        sends.append(head["webhook-id"])
        client.delete(f"{prefix}:webhook-dispatcher")
        assert successor.run_once() == 2 and successor.leased
        return 0, "TimeoutError: timed out"

    stale = WebhookDispatcher(outbox, targets, settings, log, clock=clock, send=stalled)
    events = _quota_events(clock.at_ms - DAY_MS, clock.at_ms)
    first, second = quota_message(events[0]), quota_message(events[1])
    outbox.enqueue(first, ["billing"], clock.at_ms)
    outbox.enqueue(second, ["billing"], clock.at_ms)
    stale.run_once()

    assert sends == [first.msg_id]
    assert [r.msg_id for r in webhook_receiver.unique()] == [first.msg_id, second.msg_id]
    # The late failure of the stale dispatcher resurrects nothing: the delivered message
    # can be redelivered by hand, and a replay of the flow can queue it again.
    assert client.exists(f"{prefix}:webhook-msg:billing:{first.msg_id}") == 0
    assert outbox.enqueue(first, ["billing"], clock.at_ms) == 1
    head = outbox.head("billing")
    assert head is not None and head.msg_id == first.msg_id and head.attempts == 0


def test_the_lease_outlasts_an_attempt_that_runs_into_the_timeout(
    redis_url: str, webhook_receiver: Receiver, ch_client: Client, ch_database: str
) -> None:
    clock = MovableClock(mid_month_clock(0).now_ms())
    outbox, settings, log = _setup(redis_url, webhook_receiver, ch_client, ch_database, clock)
    slow = settings.model_copy(update={"timeout": 120_000})
    dispatcher = _dispatcher(outbox, slow, log, clock)
    dispatcher.run_once()
    ttl_ms = redis.Redis.from_url(redis_url).pttl(f"{outbox._prefix}:webhook-dispatcher")
    # Renewed before each attempt: an attempt that lasts the whole timeout cannot let
    # the lease lapse (another dispatcher would send the same messages meanwhile).
    assert ttl_ms > slow.timeout


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_timeout() -> None:
    # Accepts the request, then sends its status line a byte at a time: each byte
    # comes within the timeout, the whole answer long after it.
    server = socket.create_server(("127.0.0.1", 0))
    answer = b"HTTP/1.1 204 No Content\r\n\r\n"
    done = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65_536)
            for byte in answer:
                if done.wait(0.2):
                    return
                conn.sendall(bytes([byte]))

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/hooks"
    started = time.monotonic()
    status, error = post(url, {"content-type": "application/json"}, b"{}", 0.5)
    elapsed = time.monotonic() - started
    done.set()
    thread.join()
    server.close()
    assert status == 0 and "timed out" in error
    assert elapsed < 2.0


@pytest.mark.parametrize("url", ["http://127.0.0.1:abc/hooks", "http://127.0.0.1:99999/hooks"])
def test_a_url_that_cannot_work_is_a_failed_attempt_not_an_exception(url: str) -> None:
    # An exception here would stop every endpoint's deliveries, round after round.
    status, error = post(url, {}, b"{}", 0.5)
    assert status == 0 and error


def test_a_target_shows_no_secret() -> None:
    target = Target("billing", "https://hooks.example.com/m", SECRET)
    assert SECRET not in repr(target) and SECRET not in str([target])
