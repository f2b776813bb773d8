"""Tariffs, longest-prefix rating, leg charges per ``ivrbilling``, and the longest affordable call.

Pure code: no I/O, no clock, no reactor. Money is ``Decimal``; a leg's cost is rounded HALF_UP to
four places so that ``credit - cost`` stays exact in ``numeric(16,4)``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Generic, TypeVar

from mizu.errors import ConfigError

__all__ = [
    "MAX_CALL_SECONDS",
    "LegCharge",
    "PrefixIndex",
    "RateTable",
    "Tariff",
    "charges",
    "max_talk_seconds",
    "normalise_number",
]

V = TypeVar("V")

MAX_CALL_SECONDS = 86400
"""No call is allowed to last longer than a day, whatever the credit."""

IVRBILLING_MODES = (0, 1, 2, 5)

_PLACES = Decimal("0.0001")
_ZERO = Decimal("0.0000")
# Wide enough that price * billed / 60 is exact up to the digits that matter before the single
# HALF_UP rounding to 4 places (a division by 60 only ever leaves a tail of 3s or 6s).
_CTX = Context(prec=60, rounding=ROUND_HALF_UP)
_MISSING = object()


def _money(value: object, name: str) -> Decimal:
    """``value`` as a finite, non-negative Decimal (floats through their shortest repr)."""
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} must be a finite amount >= 0, not {value}")
    return amount


def _seconds(value: object, name: str, least: int) -> int:
    """``value`` as a whole number of seconds >= ``least``."""
    seconds = operator.index(value)
    if seconds < least:
        raise ValueError(f"{name} must be >= {least}, not {seconds}")
    return seconds


@dataclass(frozen=True)
class Tariff:
    """One ``tb_rates`` row: price per minute, billing blocks in seconds, and a connect fee."""

    prefix: str
    price: Decimal
    initblock: int = 60
    increment: int = 60
    connectfee: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        # Coerce here so rows from any driver (int, str, float) compare and hash alike.
        if not isinstance(self.prefix, str):
            raise TypeError(f"prefix must be a str, not {type(self.prefix).__name__}")
        object.__setattr__(self, "price", _money(self.price, "price"))
        object.__setattr__(self, "connectfee", _money(self.connectfee, "connectfee"))
        object.__setattr__(self, "initblock", _seconds(self.initblock, "initblock", 0))
        object.__setattr__(self, "increment", _seconds(self.increment, "increment", 1))

    def billed_seconds(self, duration: float, answered: bool = True) -> int:
        """Seconds billed for a leg that lasted ``duration`` s (0 when it was never answered)."""
        if not answered:
            return 0
        duration = max(0.0, duration)  # a clock step backwards must not give a refund
        if duration <= self.initblock:
            return self.initblock
        blocks = math.ceil((duration - self.initblock) / self.increment)
        return self.initblock + blocks * self.increment

    def cost(self, duration: float, answered: bool = True) -> Decimal:
        """Connect fee plus price per minute of the billed seconds, HALF_UP to 0.0001."""
        if not answered:
            return _ZERO
        return self._cost_of(self.billed_seconds(duration))

    def seconds_for(self, budget: Decimal) -> int:
        """The longest whole duration (at most a day) whose cost stays within ``budget``.

        0 when even the connect fee and the initial block are unaffordable.
        """
        return _largest_within(lambda seconds: self.cost(seconds), budget)

    def _cost_of(self, billed: int) -> Decimal:
        exact = _CTX.add(self.connectfee, _CTX.divide(_CTX.multiply(self.price, billed), 60))
        return exact.quantize(_PLACES, rounding=ROUND_HALF_UP, context=_CTX)


class PrefixIndex(Generic[V]):
    """Longest-prefix lookup over digit strings; built once, read many times.

    A dict of prefix -> value probed from the longest prefix length present down to the
    shortest, so a lookup costs one dict probe per distinct prefix length. A prefix given twice
    keeps its last value.
    """

    __slots__ = ("_get", "_len", "_probes", "_last")

    def __init__(self, items: Iterable[tuple[str, V]] = ()):
        table: dict[str, V] = dict(items)
        lengths = sorted({len(prefix) for prefix in table}, reverse=True)
        longest = lengths[0] if lengths else 0
        # _probes[n]: the prefix lengths worth trying on a number of n digits, longest first.
        self._probes = [tuple(k for k in lengths if k <= n) for n in range(longest + 1)]
        self._last = longest
        self._get = table.get
        self._len = len(table)

    def longest(self, number: str) -> V | None:
        """The value of the longest prefix of ``number``; a '' prefix matches everything."""
        get = self._get
        size = len(number)
        for length in self._probes[size if size < self._last else self._last]:
            value = get(number[:length], _MISSING)
            if value is not _MISSING:
                return value  # type: ignore[return-value]
        return None

    def __len__(self) -> int:
        return self._len


class RateTable:
    """The tariffs of ``tb_rates`` indexed by prefix; the longest matching prefix rates a number.

    A prefix that appears twice is a configuration error (which price applies would otherwise
    depend on row order).
    """

    def __init__(self, tariffs: Iterable[Tariff]):
        tariffs = list(tariffs)
        errors = _duplicate_prefixes(tariffs)
        if errors:
            raise ConfigError(errors)
        self._index: PrefixIndex[Tariff] = PrefixIndex((t.prefix, t) for t in tariffs)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> RateTable:
        """Build from ``(prefix, price, initblock, increment, connectfee)`` rows.

        Raises ConfigError listing every bad row, not just the first.
        """
        tariffs: list[Tariff] = []
        errors: list[str] = []
        for row in rows:
            try:
                tariffs.append(Tariff(*row))
            except (TypeError, ValueError, ArithmeticError) as e:
                prefix = row[0] if len(row) else None
                errors.append(f"tb_rates prefix {prefix!r}: {e}")
        errors.extend(_duplicate_prefixes(tariffs))
        if errors:
            raise ConfigError(errors)
        return cls(tariffs)

    def rate(self, number: str) -> Tariff | None:
        """The tariff for ``number`` (normalised here: '+4930' and '004930' rate as '4930')."""
        return self._index.longest(normalise_number(number))

    def __len__(self) -> int:
        return len(self._index)


def _duplicate_prefixes(tariffs: list[Tariff]) -> list[str]:
    seen: set[str] = set()
    twice: list[str] = []
    for tariff in tariffs:
        if tariff.prefix in seen and tariff.prefix not in twice:
            twice.append(tariff.prefix)
        seen.add(tariff.prefix)
    return [f"tb_rates prefix {prefix!r} appears more than once" for prefix in twice]


_SEPARATORS = str.maketrans("", "", " -\t")


def normalise_number(number: str) -> str:
    """The number as rated and routed: spaces and dashes dropped, then one leading '+' or '00'.

    Not idempotent on purpose: '0000493' is '00493' dialled internationally, so normalise once.
    """
    if not number.isdecimal():  # the common case, plain digits, skips the translate
        number = number.translate(_SEPARATORS)
        if number.startswith("+"):
            return number[1:]
    if number.startswith("00"):
        return number[2:]
    return number


@dataclass(frozen=True)
class LegCharge:
    """What one leg's CDR carries: its cost and its billed seconds."""

    cost: Decimal
    billed: int


_UNBILLED = LegCharge(_ZERO, 0)


def _leg(tariff: Tariff | None, duration: float, answered: bool) -> LegCharge:
    if not answered:
        return _UNBILLED
    if tariff is None:
        return LegCharge(_ZERO, math.ceil(max(0.0, duration)))
    billed = tariff.billed_seconds(duration)
    return LegCharge(tariff._cost_of(billed), billed)


def charges(ivrbilling: int, a_tariff: Tariff | None, a_duration: float, a_answered: bool,
            b_tariff: Tariff | None, b_duration: float,
            b_answered: bool) -> tuple[LegCharge, LegCharge]:
    """The (A-leg, B-leg) charges of a call under ``ivrbilling`` (SPEC §6).

    2: each leg at its own tariff for its own duration. 1: only B. 5: B, and A only when B
    never answered. 0: A's whole duration at B's tariff when B answered (else A's own), all on
    the A leg. A leg not billed under the mode carries cost 0 and 0 billed seconds; a billed leg
    without a tariff costs 0 and bills its duration rounded up to the second.
    """
    if ivrbilling == 2:
        return _leg(a_tariff, a_duration, a_answered), _leg(b_tariff, b_duration, b_answered)
    if ivrbilling == 1:
        return _UNBILLED, _leg(b_tariff, b_duration, b_answered)
    if ivrbilling == 5:
        a_leg = _UNBILLED if b_answered else _leg(a_tariff, a_duration, a_answered)
        return a_leg, _leg(b_tariff, b_duration, b_answered)
    if ivrbilling == 0:
        final = b_tariff if b_answered else a_tariff
        return _leg(final, a_duration, a_answered), _UNBILLED
    raise ConfigError([f"ivrbilling must be one of 0, 1, 2, 5, not {ivrbilling!r}"])


def max_talk_seconds(ivrbilling: int, budget: Decimal, a_tariff: Tariff | None,
                     a_elapsed: float, b_tariff: Tariff) -> int:
    """The longest whole bridged time t (0..86400) whose total charges stay within ``budget``.

    A has been up for ``a_elapsed`` seconds and keeps running; B answers at t = 0. 0 when even
    t = 0 (initial blocks and connect fees) is unaffordable.
    """
    if ivrbilling not in IVRBILLING_MODES:
        raise ConfigError([f"ivrbilling must be one of 0, 1, 2, 5, not {ivrbilling!r}"])

    def total(t: int) -> Decimal:
        a_leg, b_leg = charges(ivrbilling, a_tariff, a_elapsed + t, True, b_tariff, t, True)
        return a_leg.cost + b_leg.cost

    return _largest_within(total, budget)


def _largest_within(cost_at: Callable[[int], Decimal], budget: Decimal) -> int:
    """The largest t in 0..MAX_CALL_SECONDS with cost_at(t) <= budget, cost_at non-decreasing.

    0 when cost_at(0) is already over budget. Costs are step functions, so bisect.
    """
    if cost_at(0) > budget:
        return 0
    if cost_at(MAX_CALL_SECONDS) <= budget:
        return MAX_CALL_SECONDS
    fits, over = 0, MAX_CALL_SECONDS
    while over - fits > 1:
        middle = (fits + over) // 2
        if cost_at(middle) <= budget:
            fits = middle
        else:
            over = middle
    return fits
