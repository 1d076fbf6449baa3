"""Exact decimal arithmetic for quantities and money.

Python's default decimal context rounds to 28 significant digits without a
word; billing must never round silently, so every sum and product goes
through ``EXACT``, which raises instead of rounding.
"""

from __future__ import annotations

from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
)

# 76 digits is ClickHouse's widest decimal; anything that would need more is an error.
EXACT = Context(prec=76, traps=[Inexact, Rounded, Overflow, InvalidOperation, DivisionByZero])
ZERO = Decimal(0)


def exact_sum(a: Decimal, b: Decimal) -> Decimal:
    """``a + b`` without rounding (raises decimal.Inexact if it cannot be exact)."""
    return EXACT.add(a, b)


def exact_product(a: Decimal, b: Decimal) -> Decimal:
    """``a * b`` without rounding (raises decimal.Inexact if it cannot be exact)."""
    return EXACT.multiply(a, b)
