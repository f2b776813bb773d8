"""After a crash: settle the legs that were live, resume or end the callbacks in flight.

A live leg's CDR is stored open when it is answered and its heartbeat is refreshed every
few seconds; a leg whose node died is billed up to its last heartbeat, at the tariff it
was rated with, and ends ``interrupted``. Reservations of dead sessions are released.
A callback still dialling A is dialled again (up to ``max_attempts``); one that was in
the IVR or bridged ends ``failed`` with the reason ``interrupted``.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from twisted.internet import defer
from twisted.logger import Logger

from mizu.billing.rating import Tariff

log = Logger()

INTERRUPTED = "interrupted: mizu stopped during the call"


@dataclasses.dataclass(frozen=True)
class Recovered:
    """What one recovery pass did."""

    legs: int = 0
    resumed: int = 0
    ended: int = 0
    released: int = 0

    def __bool__(self) -> bool:
        return bool(self.legs or self.resumed or self.ended or self.released)


def bill_interrupted(cdr):
    """The open CDR ``cdr`` closed at its last heartbeat (its ``endtime``)."""
    end = cdr.endtime if cdr.endtime is not None else cdr.answertime
    duration = max(0.0, (end or 0) - (cdr.answertime or end or 0))
    tariff = Tariff("", cdr.price, cdr.initblock, max(1, cdr.increment), cdr.connectfee)
    answered = cdr.answertime is not None
    cost = tariff.cost(duration, answered) if cdr.userid is not None else 0
    return dataclasses.replace(
        cdr, endtime=end, duration=int(round(duration)),
        billedduration=tariff.billed_seconds(duration, answered), cost=cost,
        result="interrupted")


@defer.inlineCallbacks
def recover(store, node: str, older_than: float, max_attempts: int):
    """One pass over what ``node`` (or any node silent for ``older_than`` s) left behind."""
    open_cdrs = yield store.ledger.unsettled(node, older_than)
    sessions = defaultdict(list)
    for cdr in open_cdrs:
        sessions[(cdr.session, cdr.userid, cdr.callbackid)].append(bill_interrupted(cdr))
    for (session, userid, callbackid), cdrs in sessions.items():
        callback = (callbackid, "failed", INTERRUPTED) if callbackid is not None else None
        charged = yield store.ledger.settle(userid, session, cdrs, callback)
        log.warn("interrupted call {session} settled: {n} legs, charged {charged}",
                 session=session, n=len(cdrs), charged=charged)
    resumed = ended = 0
    for row in (yield store.callbacks.stale(node, older_than)):
        if row.status == "calling_a" and row.attempts < max_attempts:
            yield store.callbacks.requeue(row.id, 0.0, "resumed after a restart")
            resumed += 1
        else:
            changed = yield store.callbacks.set_status(row.id, "failed", INTERRUPTED)
            ended += int(bool(changed))
    released = yield store.ledger.release_stale(node, older_than)
    done = Recovered(len(open_cdrs), resumed, ended, released or 0)
    if done:
        log.warn("recovery: {legs} interrupted legs settled, {resumed} callbacks resumed, "
                 "{ended} ended, {released} reservations released", legs=done.legs,
                 resumed=resumed, ended=ended, released=done.released)
    return done
