"""A shard seeded with what other incarnations stored prices the whole period."""

from __future__ import annotations

import pickle
from decimal import Decimal

from config.meters import Aggregation
from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    Plan,
    PlanVersion,
    PricingCatalog,
    Subscription,
    Tier,
)
from operators.contributions import Contribution
from operators.periods import billing_period
from operators.pricing import period_cost
from operators.shard import ShardState
from operators.windowing import WindowConfig
from tests.operators.conftest import JAN_2026_MS, make_event

CONFIG = WindowConfig(size_ms=1_000, grace_ms=0, settlement_ms=3_000, idle_timeout_ms=10_000)
T = JAN_2026_MS + 86_400_000
PRICE = MeterPrice(
    GraduatedPrice((Tier(Decimal(100), Decimal(1)), Tier(None, Decimal("0.5")))),
    free_allowance=Decimal(30),
)
PRICING = PricingCatalog(
    plans={"p": Plan("p", "USD", (PlanVersion("v", JAN_2026_MS, {"tokens": PRICE}),))},
    subscriptions={"acme": Subscription("p")},
)
START, END = billing_period(T, 1, "UTC")


def shard(incarnation: str = "b") -> ShardState:
    return ShardState(CONFIG, {"tokens": Aggregation.SUM}, 3_000, "b", incarnation=incarnation)


def rate_one(state: ShardState, value: Decimal) -> Decimal:
    """Admit one event, close its window; the amount it was charged."""
    events = [make_event(T, value, event_id=f"e{value}")]
    state.admit(state.screen(events, T).fresh, PRICING)
    [rated] = state.rate(state.close_all(), PRICING, T)
    assert rated.incarnation == state.ledger.incarnation
    return rated.amount


def test_seeded_period_charges_the_change_of_the_whole_periods_price() -> None:
    state = shard()
    events = [make_event(T, Decimal(50))]
    [ref] = state.unseeded(events, PRICING)
    assert (ref.start_ms, ref.end_ms) == (START, END)
    stored = period_cost(PRICE, Decimal(90))
    state.seed([ref], {("acme", "tokens", START, "v"): Contribution(Decimal(90), stored)}, PRICING)

    amount = rate_one(state, Decimal(50))

    assert stored + amount == period_cost(PRICE, Decimal(140))
    assert state.unseeded(events, PRICING) == [], "a period is read once"
    [counter], _ = state.live_changes(PRICING, T)
    assert (counter.quantity, counter.amount) == (Decimal(140), period_cost(PRICE, Decimal(140)))


def test_state_from_before_incarnations_goes_on_as_incarnation_blank() -> None:
    old = shard(incarnation="")
    del old.seeded
    del old.ledger.incarnation
    restored: ShardState = pickle.loads(pickle.dumps(old))

    restored.reconfigure(CONFIG, {"tokens": Aggregation.SUM}, 3_000)

    assert rate_one(restored, Decimal(10)) == 0  # within the free allowance
    assert restored.ledger.incarnation == ""
    assert restored.seeded == {}
