"""Cutting a bridged call when its credit runs out, reserving more as it goes.

A bridged call holds a reservation covering ``[callback] quota`` seconds of talk; shortly
before they are used up more is reserved, and when no more can be, B is hung up at the
second the reservation ends and the call is billed to that second.
"""

from __future__ import annotations

from decimal import Decimal

from twisted.internet import defer
from twisted.logger import Logger

from mizu.errors import InsufficientCredit, LimitReached, MizuError

log = Logger()


class CreditCut:
    """Mixed into ``CallSession``: uses its ``core``, ``a``/``b`` records, ``user``,
    ``key``, ``reserved``, ``finished``, ``_talk_seconds()``, ``_total_at()`` and
    ``hangup_b()``, ``_reserve()`` and ``_limited()``."""

    def _schedule_cut(self) -> None:
        self._a_at_b = self._a_elapsed()
        self._plan_cut()

    def _covered(self) -> int:
        """Seconds of talk from B's answer that the credit reserved so far pays for."""
        return self._talk_seconds(self.reserved, self.b.tariff, self._a_at_b)

    def _plan_cut(self, final: bool = False) -> None:
        """Reserve more shortly before the reservation runs out; cut when none is left."""
        covered = self._covered()
        end = self.b.answered + covered
        now = self._now()
        if final or covered >= self.core.config().callback.max_call_time:
            log.info("{key}: the call will be cut after {s} s of talk ({why})", key=self.key,
                     s=covered, why="no more credit can be reserved" if final
                     else "[callback] max_call_time")
            self._cut_talk = covered
            self._cut = self.core.clock.callLater(max(0.0, end - now), self._cut_now)
            return
        margin = min(10.0, covered / 2)
        self._cut = self.core.clock.callLater(max(0.0, end - margin - now), self._extend,
                                              covered)

    @defer.inlineCallbacks
    def _extend(self, covered: int):
        if self.b is None or self.b.ended is not None:
            return
        config = self.core.config().callback
        more = min(covered + config.quota, config.max_call_time)
        minimum = self._total_at(self.b.tariff, covered + 1, self._a_at_b) - self.reserved
        wanted = self._total_at(self.b.tariff, more, self._a_at_b) - self.reserved
        final = False
        try:
            got = yield self._reserve(max(minimum, Decimal("0.0001")), max(wanted, minimum))
            self.reserved += got.amount
            if self.finished.called:  # settled while we waited: give it back
                yield self.core.store.ledger.settle(self.user.id, self.key, [], None)
                return
        except InsufficientCredit:
            final = True
        except LimitReached as e:
            self._limited(e)
            final = True
        except MizuError as e:
            log.warn("{key}: could not reserve more credit ({e}); the call ends when what "
                     "is reserved runs out", key=self.key, e=e)
            final = True
        if self.b.ended is None:
            self._plan_cut(final)

    def _cut_now(self) -> None:
        log.info("{key}: credit used up, cutting the call", key=self.key)
        self._was_cut = True
        # Bill exactly the time the reservation covers, whatever the hangups take (the
        # timer fires a little after the planned end: callLater reads the clock again).
        self._cut_at = self.b.answered + self._cut_talk
        # B goes now; A hears the script's goodbye, which is not billed (see settle).
        self.hangup_b()
