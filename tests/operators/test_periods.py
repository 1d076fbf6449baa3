"""segment_span: the window starts that share a billing segment, which rating reuses."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from config.pricing import Plan, PlanVersion, PricingCatalog, Subscription
from operators.periods import billing_segment, segment_span
from tests.operators.conftest import JAN_2026_MS, NOV_2026_MS

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
