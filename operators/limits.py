"""Limits on the values the job meters, the same for events and for quotes."""

from __future__ import annotations

from decimal import Decimal

# Values beyond this cannot be summed safely into Decimal(38, 9) columns.
MAX_VALUE = Decimal(10) ** 18
MAX_INT_VALUE = 10**18
# Decimal places a value may carry (the columns' scale).
MAX_FRACTION_DIGITS = 9
