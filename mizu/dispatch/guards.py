"""The fraud limits that apply to one user: their own (``tb_user``) or the ``[fraud]`` ones."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Limits:
    """0 (or None for the cap) is no limit."""

    max_calls: int
    per_hour: int
    daily_cap: Decimal | None


def limits_for(fraud, user) -> Limits:
    """``user``'s ``maxcalls``, ``callbacksperhour`` and ``dailyspend`` where set (not
    NULL), else ``fraud``'s (a ``FraudConfig``); all off without a user."""
    if user is None:
        return Limits(0, 0, None)

    def own(value, default):
        return default if value is None else value

    cap = own(user.dailyspend, Decimal(str(fraud.daily_spend)))
    return Limits(own(user.maxcalls, fraud.max_calls_per_user),
                  own(user.callbacksperhour, fraud.callbacks_per_hour),
                  Decimal(cap) if cap else None)
