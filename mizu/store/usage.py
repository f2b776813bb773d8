"""What the fraud guards count: a user's and an A-number's recent requests, a day's spend."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from twisted.internet import defer

from mizu.billing.rating import normalise_number

# Each count stops at its limit: what it reads is bounded by the limit, however many
# rows a user or a number has in the window (a flood refused is not counted again).
_RECENT = (
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM tb_callbacks WHERE userid = %(user)s"
    "         AND created > now() - %(within)s * interval '1 second'"
    "         LIMIT %(user_limit)s) u),"
    " (SELECT count(*) FROM (SELECT 1 FROM tb_callbacks WHERE anum = ANY(%(anums)s)"
    "         AND created > now() - %(within)s * interval '1 second'"
    "         LIMIT %(anum_limit)s) a),"
    " (SELECT coalesce(sum(cost), 0) FROM tb_cdrs WHERE userid = %(user)s"
    "         AND starttime >= date_trunc('day', now(), 'UTC'))")


@dataclass(frozen=True)
class Recent:
    """Callback requests stored within the window, by the user and for the A-number, and
    what the user was charged since 00:00 UTC."""

    by_user: int
    by_anumber: int
    spent_today: Decimal


def spellings(number: str) -> list[str]:
    """The ways one number is stored: ``4917011``, ``+4917011`` and ``004917011``."""
    digits = normalise_number(number)
    return [digits, "+" + digits, "00" + digits]


class Usage:
    """Reads only: every count is one indexed query (``tb_callbacks (userid, created)``,
    ``(anum, created)`` and ``tb_cdrs (userid, starttime)``)."""

    def __init__(self, pool):
        self._pool = pool

    @defer.inlineCallbacks
    def recent(self, userid: int | None, anum: str, within: float = 3600,
               user_limit: int = 0, anum_limit: int = 0):
        """Counts up to ``user_limit`` and ``anum_limit`` (0: not counted)."""
        rows = yield self._pool.runQuery(_RECENT, {
            "user": userid, "anums": spellings(anum) if anum else [],
            "within": float(within), "user_limit": user_limit, "anum_limit": anum_limit})
        by_user, by_anumber, spent = rows[0]
        return Recent(by_user, by_anumber, spent)
