"""Webhook messages: Standard Webhooks signatures, stable ids, payloads, backoff."""

from __future__ import annotations

import json
import random
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from operators.live_usage import LiveCounter, QuotaEvent
from operators.webhooks import (
    backoff_ms,
    headers,
    period_closed_message,
    quota_message,
    signature,
    spend_crossings,
    spend_message,
)
from tests.fixtures.webhook_receiver import SECRET, expected_signature

# The example of the Standard Webhooks specification (and the svix libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

START = 1_700_000_000_000
END = START + 30 * 86_400_000


def _quota(kind: str, percent: Decimal | None, at_ms: int) -> QuotaEvent:
    return QuotaEvent("acme", "tokens", START, END, kind, Decimal(80), percent, Decimal(81), at_ms)


def test_signature_matches_the_specification_example() -> None:
    assert signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


@given(st.text(max_size=200), st.integers(0, 2**40))
def test_signature_agrees_with_an_independent_implementation(body: str, timestamp: int) -> None:
    head = headers(SECRET, "msg_x", timestamp, body)
    assert head["webhook-signature"] == expected_signature(
        SECRET, "msg_x", str(timestamp), body.encode()
    )
    assert head["webhook-id"] == "msg_x" and head["webhook-timestamp"] == str(timestamp)


def test_ids_are_stable_across_replays_and_differ_by_event() -> None:
    first = quota_message(_quota("threshold", Decimal(80), START + 5))
    replay = quota_message(_quota("threshold", Decimal(80), START + 9_000))
    other = quota_message(_quota("threshold", Decimal(90), START + 5))
    assert first.msg_id == replay.msg_id != other.msg_id
    assert first.msg_id.startswith("msg_")


def test_a_spend_threshold_keeps_its_id_however_the_amount_is_written() -> None:
    # YAML 100.0 (a float) and "100" are one amount: rewriting the settings must not
    # announce a crossing again under a new id.
    counter = LiveCounter("acme", "tokens", START, END, Decimal(1), Decimal(1), "EUR", False)
    ids = {
        spend_message(counter, Decimal(text), Decimal("120"), START).msg_id
        for text in ("100", "100.0", "1E+2", "100.00")
    }
    assert len(ids) == 1
    body = json.loads(spend_message(counter, Decimal("100.0"), Decimal("120"), START).body)
    assert body["data"]["threshold"] == "100"


def test_payload_shape_and_exact_decimals() -> None:
    msg = quota_message(_quota("threshold", Decimal("80.5"), START))
    payload = json.loads(msg.body)
    assert payload["type"] == "quota.threshold"
    assert payload["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert payload["data"]["percent"] == "80.5" and payload["data"]["tenant"] == "acme"
    counter = LiveCounter("acme", "tokens", START, END, Decimal(1), Decimal(1), "EUR", False)
    spend = json.loads(spend_message(counter, Decimal("100"), Decimal("100.25"), START).body)
    assert spend["data"]["amount"] == "100.25" and spend["type"] == "spend.threshold"
    counters = [
        LiveCounter("acme", m, START, END, Decimal(q), Decimal(a), "EUR", False)
        for m, q, a in (("tokens", "10", "0.5"), ("calls", "3", "0.25"))
    ]
    closed = json.loads(period_closed_message(counters, END).body)["data"]
    assert closed["amount"] == "0.75"
    assert [m["meter"] for m in closed["meters"]] == ["calls", "tokens"]


def test_spend_crossings_once_and_in_order() -> None:
    thresholds = [Decimal(500), Decimal(100), Decimal(50)]
    assert spend_crossings(Decimal(120), thresholds, set()) == [Decimal(50), Decimal(100)]
    assert spend_crossings(Decimal(120), thresholds, {Decimal(50)}) == [Decimal(100)]
    assert spend_crossings(Decimal(49), thresholds, set()) == []


@given(st.integers(1, 200), st.integers(0, 2**32))
def test_backoff_doubles_with_jitter_and_is_capped(attempts: int, seed: int) -> None:
    delay = backoff_ms(attempts, 5_000, 3_600_000, random.Random(seed))
    full = min(5_000 * 2 ** min(attempts - 1, 40), 3_600_000)
    assert full // 2 <= delay <= full
