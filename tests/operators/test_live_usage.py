"""Live usage: which price version's quota a period answers to."""

from __future__ import annotations

from decimal import Decimal

from config.meters import Aggregation
from config.pricing import (
    GraduatedPrice,
    MeterPrice,
    Plan,
    PlanVersion,
    PricingCatalog,
    Quota,
    Subscription,
    Tier,
    UnitPrice,
)
from operators.live_usage import LiveUsage
from tests.operators.conftest import make_event

DAY_MS = 86_400_000
# 2026-11-01 and 2026-11-15 (UTC): two versions inside one monthly period.
NOV_1 = 1_793_491_200_000
NOV_15 = NOV_1 + 14 * DAY_MS
PRICE = MeterPrice(UnitPrice(Decimal("0.01")))


def catalog() -> PricingCatalog:
    versions = (
        PlanVersion("old", 0, {"tokens": PRICE}, quotas={"tokens": Quota(hard_limit=Decimal(5))}),
        PlanVersion(
            "new", NOV_15, {"tokens": PRICE}, quotas={"tokens": Quota(hard_limit=Decimal(100))}
        ),
    )
    return PricingCatalog(
        plans={"p": Plan("p", "USD", versions)}, subscriptions={"acme": Subscription("p")}
    )


def test_the_latest_versions_quota_applies_whatever_order_its_segments_came_in() -> None:
    pricing = catalog()
    live = LiveUsage({"tokens": Aggregation.SUM})
    # The new version's events first (a faster partition), then the old version's.
    live.fold([make_event(NOV_15 + 1_000, Decimal(3))], pricing, 60_000)
    live.fold([make_event(NOV_1 + 1_000, Decimal(4), event_id="b")], pricing, 60_000)

    counters, crossings = live.changes(pricing, NOV_15 + 2_000)

    # 7 in the period: past the old version's limit (5), far below the new one's (100).
    assert [c.quantity for c in counters] == [Decimal(7)]
    assert crossings == []
    assert not counters[0].hard_limited


def test_a_live_counter_owes_the_opening_versions_zero_usage_fee_once() -> None:
    def graduated(fee: int) -> MeterPrice:
        return MeterPrice(GraduatedPrice((Tier(Decimal(100), Decimal("0.02"), Decimal(fee)),)))

    # First-tier fees: 5.00 in the old version, 7.00 in the new one.
    versions = (
        PlanVersion("old", 0, {"tokens": graduated(5)}),
        PlanVersion("new", NOV_15, {"tokens": graduated(7)}),
    )
    pricing = PricingCatalog(
        plans={"p": Plan("p", "USD", versions)}, subscriptions={"acme": Subscription("p")}
    )
    live = LiveUsage({"tokens": Aggregation.SUM})
    live.fold([make_event(NOV_15 + 1_000, Decimal(10))], pricing, 60_000)
    after, _ = live.changes(pricing, NOV_15 + 2_000)
    live.fold([make_event(NOV_1 + 1_000, Decimal(10), event_id="b")], pricing, 60_000)
    both, _ = live.changes(pricing, NOV_15 + 3_000)

    # The old version's fee is due once a period, with or without usage under it.
    assert [c.amount for c in after] == [Decimal("5.20")]
    assert [c.amount for c in both] == [Decimal("5.40")]


def test_expiry_finds_a_period_met_after_a_later_one_was_kept() -> None:
    # expire() skips its scan while nothing can be due: a period that ends earlier
    # than every kept one, met later (a slow partition), must still be forgotten.
    pricing = catalog()
    live = LiveUsage({"tokens": Aggregation.SUM})
    dec_1 = NOV_1 + 30 * DAY_MS
    live.fold([make_event(dec_1 + 1_000, Decimal(1))], pricing, 60_000)
    live.changes(pricing, dec_1 + 2_000)
    assert live.expire(NOV_1) == 0  # nothing ended: December's period is kept
    live.fold([make_event(NOV_1 + 1_000, Decimal(1), event_id="b")], pricing, 60_000)
    live.changes(pricing, dec_1 + 3_000)
    assert live.expire(dec_1) == 1  # November's period ended at December 1
    assert [key[2] for key in live.periods] == [dec_1]
    # A changed period waits for its counter to be published.
    live.fold([make_event(dec_1 + 5_000, Decimal(1), event_id="c")], pricing, 60_000)
    assert live.expire(dec_1 + 31 * DAY_MS) == 0
    live.changes(pricing, dec_1 + 6_000)
    assert live.expire(dec_1 + 31 * DAY_MS) == 1
    assert live.periods == {}
