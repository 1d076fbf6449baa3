"""Billing periods: window sizes that cannot line up with a period start are found, and
segment_span gives the window starts that share a billing segment, which rating reuses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.pricing import Plan, PlanVersion, PricingCatalog, Subscription
from operators.periods import (
    billing_period,
    billing_segment,
    misaligned_periods,
    misaligned_version,
    segment_span,
)
from tests.operators.conftest import NOV_2026_MS

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
DEC_2026_ST_JOHNS_MS = 1_796_095_800_000  # 2026-12-01T03:30:00Z: 00:00 in St. John's
JAN_2026_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def catalog(
    *subscriptions: tuple[str, str, int], default: bool = False, since_ms: int = JAN_2026_MS
) -> PricingCatalog:
    return PricingCatalog(
        plans={"p": Plan("p", "USD", (PlanVersion("v1", since_ms, {}),))},
        subscriptions={t: Subscription("p", anchor, zone) for t, zone, anchor in subscriptions},
        default_plan="p" if default else None,
    )


def test_the_issue_case_an_hour_window_straddles_st_johns_midnight() -> None:
    # An event at 2026-12-01T03:45Z is December 1, 00:15 in St. John's (-03:30): an
    # hour window from 03:00Z would bill it to November.
    pricing = catalog(("acme", "UTC", 1), ("zeta", "America/St_Johns", 1))

    found = misaligned_periods(pricing, HOUR)

    assert found is not None
    assert (found.tenant, found.timezone, found.anchor_day) == ("zeta", "America/St_Johns", 1)
    assert found.period_start_ms % HOUR
    assert found.step_ms == 30 * MINUTE
    assert misaligned_periods(pricing, 30 * MINUTE) is None
    start, _ = billing_period(DEC_2026_ST_JOHNS_MS + 15 * MINUTE, 1, "America/St_Johns")
    assert start == DEC_2026_ST_JOHNS_MS


@pytest.mark.parametrize(
    ("zone", "anchor", "fits", "does_not_fit"),
    [
        ("UTC", 1, DAY, 2 * DAY),
        ("UTC", 15, DAY, 7 * DAY),
        ("Europe/Berlin", 15, HOUR, DAY),  # midnight is 23:00Z or 22:00Z
        ("Asia/Kathmandu", 1, 15 * MINUTE, 30 * MINUTE),  # +05:45
        ("Australia/Lord_Howe", 1, 30 * MINUTE, HOUR),  # +10:30, +11 in summer
    ],
)
def test_window_sizes_that_fit_each_zone(
    zone: str, anchor: int, fits: int, does_not_fit: int
) -> None:
    pricing = catalog(("t", zone, anchor))

    assert misaligned_periods(pricing, fits) is None
    assert misaligned_periods(pricing, MINUTE) is None
    found = misaligned_periods(pricing, does_not_fit)
    assert found is not None and found.tenant == "t"


def test_default_plan_tenants_are_checked_as_utc_from_the_1st() -> None:
    found = misaligned_periods(catalog(default=True), 7 * DAY)

    assert found is not None
    assert (found.tenant, found.timezone, found.step_ms) == ("*", "UTC", DAY)


def test_zone_rules_from_before_the_plan_started_do_not_count() -> None:
    # Monrovia was -00:44:30 until 1972: periods then started between minutes.
    assert misaligned_periods(catalog(("t", "Africa/Monrovia", 1)), MINUTE) is None
    old = misaligned_periods(catalog(("t", "Africa/Monrovia", 1), since_ms=0), MINUTE)
    assert old is not None and old.step_ms == 30_000


def test_a_price_version_that_starts_inside_a_window_is_found() -> None:
    # v2 starts at 10:17Z: an hour window from 10:00 would be priced whole under v1,
    # and the invoice, pricing events by their own time, would disagree with it.
    v2_ms = JAN_2026_MS + 10 * HOUR + 17 * MINUTE
    versions = (PlanVersion("v1", JAN_2026_MS, {}), PlanVersion("v2", v2_ms, {}))
    pricing = PricingCatalog({"p": Plan("p", "USD", versions)}, {})

    found = misaligned_version(pricing, HOUR)

    assert found is not None
    assert (found.plan, found.version, found.effective_from_ms) == ("p", "v2", v2_ms)
    assert found.step_ms == MINUTE
    assert misaligned_version(pricing, MINUTE) is None


DAY_MS = 86_400_000
# Versions that start mid-period (the 10th), so spans end both at versions and periods.
MID_MARCH_MS = JAN_2026_MS + 68 * DAY_MS
PLAN = Plan(
    id="pro",
    currency="EUR",
    versions=(
        PlanVersion(version="v1", effective_from_ms=MID_MARCH_MS, prices={}),
        PlanVersion(version="v2", effective_from_ms=NOV_2026_MS + 9 * DAY_MS, prices={}),
    ),
)
PRICING = PricingCatalog(
    plans={"pro": PLAN},
    subscriptions={
        "utc": Subscription("pro"),
        "berlin": Subscription("pro", anchor_day=15, timezone="Europe/Berlin"),
        "tokyo": Subscription("pro", anchor_day=28, timezone="Asia/Tokyo"),
    },
)


@settings(max_examples=300)
@given(
    tenant=st.sampled_from(["utc", "berlin", "tokyo"]),
    at_ms=st.integers(JAN_2026_MS, NOV_2026_MS + 60 * DAY_MS),
    probe=st.floats(0, 1),
)
def test_every_start_in_the_span_has_the_segment_and_none_just_outside(
    tenant: str, at_ms: int, probe: float
) -> None:
    segment = billing_segment(PRICING, tenant, at_ms)
    assert segment is not None
    start, end = segment_span(segment, at_ms)
    assert start <= at_ms < end
    inside = start + int(probe * (end - 1 - start))
    assert billing_segment(PRICING, tenant, inside) == segment
    assert billing_segment(PRICING, tenant, end - 1) == segment
    assert billing_segment(PRICING, tenant, start) == segment
    assert billing_segment(PRICING, tenant, start - 1) != segment
    assert billing_segment(PRICING, tenant, end) != segment
