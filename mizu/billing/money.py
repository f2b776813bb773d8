"""Money as the front ends show it."""

from __future__ import annotations

from decimal import Decimal


def amount(value: Decimal) -> str:
    """Money as a plain decimal with two places at least: ``5.00``, ``0.0125``."""
    text = format(value.normalize(), "f")
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"
