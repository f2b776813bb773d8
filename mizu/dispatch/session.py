"""One paid call: the leg the IVR runs on, the B leg it forwards to, their credit and CDRs.

``CallSession`` is what the IVR sees of the call (``IIvrHost``): it authenticates PINs,
tells the balance and the minutes left, and connects B. It reserves credit before B is
dialled, cuts the bridged call when the reservation is spent, and settles every leg in one
transaction at the end. A callback (``mizu.dispatch.callback``) and a calling card
(``mizu.dispatch.inbound``) differ only in how the first leg comes up.
"""

from __future__ import annotations

from decimal import Decimal

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from mizu.billing.rating import charges, max_talk_seconds
from mizu.dispatch.cut import CreditCut
from mizu.dispatch.guards import limits_for
from mizu.dispatch.records import Core, LegRecord, b_outcome
from mizu.errors import (
    Blocked,
    InsufficientCredit,
    LegGone,
    LimitReached,
    MizuError,
    NoCapacity,
    NoRoute,
    StoreError,
)
from mizu.ivr.session import IIvrHost
from mizu.store.ledger import Cdr
from mizu.telephony import WORKER

__all__ = ["CallSession", "Core", "LegRecord", "WORKER_DIED", "b_outcome", "leg_result"]

log = Logger()

WORKER_DIED = "worker died"  # a leg's result when its SIP worker process ended under it


def leg_result(cause) -> str:
    """What a leg's CDR says of how it ended."""
    if cause is None:
        return "failed"
    return WORKER_DIED if cause.by == WORKER else cause.cause


@implementer(IIvrHost)
class CallSession(CreditCut):
    """The billing and B side of one call; subclasses bring the first leg up."""

    def __init__(self, core: Core, key: str, *, user=None, authenticated=False,
                 destination="", anumber="", accessnumber="", callbackid=None,
                 add_anumber=False, pin="if-needed", callerid=""):
        self.core = core
        self.key = key
        self.user = user
        self.authenticated = bool(authenticated and user is not None)
        self.destination = destination
        self.anumber = anumber
        self.accessnumber = accessnumber
        self.callbackid = callbackid
        self.add_anumber = add_anumber
        self.pin_mode = pin
        self.callerid = callerid
        self.reserved = Decimal(0)
        self.a: LegRecord | None = None
        self.b: LegRecord | None = None
        self.a_leg = None
        self.b_leg = None
        self._cut = None
        self._was_cut = False
        self._cut_at: float | None = None
        self._cut_talk: int | None = None  # the talk time the final reservation covers
        self._a_at_b = 0.0
        self._connecting: defer.Deferred | None = None
        self._dialling: defer.Deferred | None = None
        self.finished = defer.Deferred()
        self.status = "starting"
        self._b_waiters: list[defer.Deferred] = []
        self._opening: list[defer.Deferred] = []
        self.refusal = ""  # why a fraud guard refused B: the reason the call ends with

    # -- what the console and the heartbeat see -------------------------------------------
    def open_cdrs(self) -> list[int]:
        return [r.cdr_id for r in (self.a, self.b) if r is not None and r.cdr_id
                and r.ended is None]

    def describe(self) -> str:
        legs = " ".join(f"{r.kind}={r.callee}" for r in (self.a, self.b) if r)
        who = self.user.username if self.user else "-"
        return f"session {self.key} {self.status} user={who} {legs}".strip()

    def ended_by(self, result: str) -> bool:
        """Whether a leg ended with ``result`` ("shutdown", ``WORKER_DIED``)."""
        return any(r is not None and r.result == result for r in (self.a, self.b))

    def hangup(self) -> None:
        """End the call now (console ``hangup``)."""
        for leg in (self.b_leg, self.a_leg):
            if leg is not None and leg.state != "ended":
                leg.hangup()

    # -- IIvrHost -------------------------------------------------------------------------
    @defer.inlineCallbacks
    def authenticate_pin(self, pin):
        users = self.core.store.users
        found = (yield users.by_pincode(pin)) if pin else None
        if found is None or found.usertype != "enduser":
            return False
        if self.pin_mode == "always" and self.user is not None and found.id != self.user.id:
            return False  # A-number and PIN: the PIN must be the A-number owner's
        self.user, self.authenticated = found, True
        if self.add_anumber and self.anumber:
            added = yield users.add_anumber(self.anumber, found.id)
            if added:
                log.info("A-number {anum} added for user {user}", anum=self.anumber,
                         user=found.username)
        return True

    @defer.inlineCallbacks
    def authenticate_ani(self):
        found = yield self.core.store.users.by_anumber(self.anumber) if self.anumber else None
        if found is not None:
            self.user, self.authenticated = found, True
        return found is not None

    @defer.inlineCallbacks
    def balance(self):
        if self.user is None:
            return Decimal(0)
        credit = yield self.core.store.ledger.balance(self.user.id)
        return credit or Decimal(0)

    @defer.inlineCallbacks
    def check_credit(self):
        if self.user is None:
            return False
        budget = yield self._budget()
        return budget > self._a_cost_now()

    @defer.inlineCallbacks
    def max_seconds(self, number):
        tariff = self._rate(number)
        budget = yield self._budget()
        return self._talk_seconds(budget, tariff)

    def connect(self, number):
        d = defer.Deferred(self._cancel_connect)
        self._connecting = d
        self._connect(number).addErrback(self._connect_failed)
        return d

    # -- billing helpers ------------------------------------------------------------------
    def _now(self) -> float:
        return self.core.clock.seconds()

    def _rate(self, number):
        tables = self.core.tables()
        prefix = tables.blocked_prefix(number)
        if prefix is not None:
            self.refusal = f"B-number {number} is not allowed: {prefix} is a blocked " \
                           "(premium-rate or fraud-risk) destination"
            log.warn("fraud guard: {key} refused B {number}: prefix {prefix} is blocked",
                     key=self.key, number=number, prefix=prefix)
            raise Blocked(self.refusal)
        tariff = tables.rates.rate(number)
        if tariff is None or tables.gateway_uri(number) is None:
            raise NoRoute(f"no rate or route for {number}")
        return tariff

    def _reserve(self, minimum: Decimal, wanted: Decimal, cap_minimum=Decimal(0)):
        """Hold credit for this call within the [fraud] limits on calls at once and on the
        day's spend (of which at least ``cap_minimum`` must be left): ``InsufficientCredit``
        or ``LimitReached``."""
        limits = self.limits()
        return self.core.store.ledger.reserve(
            self.user.id, self.key, minimum, wanted, node=self.core.node,
            max_calls=limits.max_calls, daily_cap=limits.daily_cap, cap_minimum=cap_minimum)

    def limits(self):
        """The fraud limits of this call's payer."""
        return limits_for(self.core.config().fraud, self.user)

    def _limited(self, error: LimitReached) -> None:
        self.refusal = str(error)
        log.warn("fraud guard: {key} refused: {e}", key=self.key, e=error)

    @defer.inlineCallbacks
    def _budget(self):
        """The credit this call may spend: what is free plus what it holds already."""
        free = yield self.core.store.ledger.available(self.user.id)
        return free + self.reserved

    def _a_elapsed(self) -> float:
        return self.a.duration(self._now()) if self.a else 0.0

    def _a_cost_now(self) -> Decimal:
        a_charge, _ = charges(self.core.settings().ivrbilling, self.a.tariff if self.a else None,
                              self._a_elapsed(), bool(self.a and self.a.answered), None, 0, False)
        return a_charge.cost

    def _a_ended(self, cause) -> None:
        """The first leg's end, once (from its observer or the IVR's ``on_ended``)."""
        if self.a.ended is None:
            self.a.ended = self._now()
            self.a.result = leg_result(cause)

    def _talk_seconds(self, budget: Decimal, tariff, a_elapsed: float | None = None) -> int:
        """How long B may talk on ``budget``, A having run ``a_elapsed`` s (now: so far)."""
        if a_elapsed is None:
            a_elapsed = self._a_elapsed()
        seconds = max_talk_seconds(self.core.settings().ivrbilling, budget,
                                   self.a.tariff if self.a else None, a_elapsed, tariff)
        return min(seconds, self.core.config().callback.max_call_time)

    def _total_at(self, tariff, talk: int, a_elapsed: float | None = None) -> Decimal:
        """The whole call's charges if B talks ``talk`` s from now (or from B's answer,
        when ``a_elapsed`` is A's time at that answer)."""
        if a_elapsed is None:
            a_elapsed = self._a_elapsed()
        a_charge, b_charge = charges(self.core.settings().ivrbilling,
                                     self.a.tariff if self.a else None,
                                     a_elapsed + talk, True, tariff, talk, True)
        return a_charge.cost + b_charge.cost

    # -- connecting B ---------------------------------------------------------------------
    @defer.inlineCallbacks
    def _connect(self, number):
        if self.user is None:
            self._connected("no_credit")
            return
        try:
            tariff = self._rate(number)
        except NoRoute:
            self._connected("no_route")
            return
        tables, config = self.core.tables(), self.core.config()
        needed = self._total_at(tariff, 0) - self.reserved
        first = min(config.callback.quota, config.callback.max_call_time)
        wanted = self._total_at(tariff, first) - self.reserved
        if wanted > 0:
            try:
                got = yield self._reserve(max(needed, Decimal("0.0001")), wanted)
            except InsufficientCredit:
                self._connected("no_credit")
                return
            except LimitReached as e:
                self._limited(e)
                self._connected("limit")
                return
            self.reserved += got.amount
        if self._connecting is None:
            return  # the caller left while we reserved
        self.b = LegRecord("B", self.user.callerid or self.anumber, number, tariff,
                           start=self._now())
        self.destination = number
        yield self._set_status("calling_b")
        self._dialling = self.core.telephony.originate(
            tables.gateway_uri(number), self.b.caller, config.callback.ring_timeout,
            _BObserver(self), near=self.a_leg)
        try:
            self.b_leg = yield self._dialling
        except defer.CancelledError:
            self.b.ended, self.b.result = self._now(), "cancelled"
        except (NoCapacity, LegGone, MizuError) as e:
            self.b.ended, self.b.result = self._now(), "failed"
            log.warn("B leg of {key} to {number} not dialled: {e}", key=self.key,
                     number=number, e=e)
            self._connected("failed")

    def _connect_failed(self, failure):
        log.failure("connecting {key} failed", failure, key=self.key)
        self._connected("failed")

    def _cancel_connect(self, d):
        self._connecting = None
        if self._dialling is not None and not self._dialling.called:
            self._dialling.cancel()
        if self.b_leg is not None and self.b_leg.state != "ended":
            self.b_leg.hangup()

    def _connected(self, outcome: str) -> None:
        if self._cut is not None and self._cut.active():
            self._cut.cancel()
        d, self._connecting = self._connecting, None
        if d is not None:
            d.callback(outcome)

    def b_answered(self, leg) -> None:
        self.b.answered = self._now()
        self.status = "bridged"
        try:
            self.a_leg.bridge(leg)
        except LegGone:
            leg.hangup()
            return
        self._open_cdr(self.b)
        self._set_status("bridged")
        self._schedule_cut()

    def hangup_b(self) -> None:
        if self.b_leg is not None and self.b_leg.state != "ended":
            self.b_leg.hangup()

    def b_ended(self, leg, cause) -> None:
        self.b.ended = self._now()
        answered = self.b.answered is not None
        self.b.result = "cut" if self._was_cut else leg_result(cause)
        if answered and self.a_leg is not None and self.a_leg.state != "ended":
            try:
                self.a_leg.unbridge(leg)
            except LegGone:
                pass
        self._connected(b_outcome(cause, answered, self._was_cut))
        waiters, self._b_waiters = self._b_waiters, []
        for d in waiters:
            d.callback(None)

    def b_over(self) -> defer.Deferred:
        """Hang B up if it is still there; fires once B has ended (at once without B)."""
        if self.b_leg is None or self.b_leg.state == "ended" or self.b.ended is not None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._b_waiters.append(d)
        self.b_leg.hangup()
        return d

    # -- records and the end --------------------------------------------------------------
    def _open_cdr(self, record: LegRecord) -> None:
        d = self.core.store.ledger.open_cdr(self._cdr(record, open_=True))

        def opened(cdr_id):
            record.cdr_id = cdr_id

        d.addCallbacks(opened, lambda f: log.warn("open CDR of {key} not stored: {e}",
                                                  key=self.key, e=f.getErrorMessage()))
        self._opening.append(d)

    def _cdr(self, record: LegRecord, charge=None, open_=False) -> Cdr:
        tariff = record.tariff
        return Cdr(
            leg=record.kind, caller=record.caller, callee=record.callee,
            callbackid=self.callbackid, userid=self.user.id if self.user else None,
            accessnumber=self.accessnumber, starttime=record.start,
            answertime=record.answered, endtime=None if open_ else record.ended,
            duration=int(round(record.duration(self._now()))) if not open_ else 0,
            billedduration=charge.billed if charge else 0,
            cost=charge.cost if charge and self.user else Decimal(0),
            result="answered" if open_ else record.result,
            price=tariff.price if tariff else Decimal(0),
            initblock=tariff.initblock if tariff else 0,
            increment=tariff.increment if tariff else 1,
            connectfee=tariff.connectfee if tariff else Decimal(0),
            session=self.key, node=self.core.node, id=record.cdr_id)

    def _set_status(self, status: str, reason: str = ""):
        self.status = status
        if self.callbackid is None:
            return defer.succeed(None)
        d = self.core.store.callbacks.set_status(self.callbackid, status, reason)
        d.addErrback(lambda f: log.warn("callback {id} status {status} not stored: {e}",
                                        id=self.callbackid, status=status,
                                        e=f.getErrorMessage()))
        return d

    @defer.inlineCallbacks
    def settle(self, status: str, reason: str, close: bool = True):
        """Write every leg's CDR, charge the user and close the callback row, at once
        (``close=False`` leaves the row alone: it is to be dialled again)."""
        # An open CDR still being stored must be closed, not written a second time.
        opening, self._opening = self._opening, []
        if opening:
            yield defer.DeferredList(opening)
        now = self._now()
        for record in (self.a, self.b):
            if record is not None and record.ended is None:
                record.ended = now
            if record is not None and self._cut_at is not None and record.answered is not None:
                record.ended = min(record.ended, self._cut_at)
        a, b = self.a, self.b
        a_time, b_time = (a.duration(now) if a else 0), (b.duration(now) if b else 0)
        if self._was_cut:
            # The times the reservation was checked against: float timestamps differ from
            # them by a few 1e-7 s, enough to bill one increment more than was reserved.
            a_time, b_time = self._a_at_b + self._cut_talk, self._cut_talk
        a_charge, b_charge = charges(
            self.core.settings().ivrbilling, a.tariff if a else None, a_time,
            bool(a and a.answered), b.tariff if b else None, b_time, bool(b and b.answered))
        cdrs = [self._cdr(r, c) for r, c in ((a, a_charge), (b, b_charge)) if r is not None]
        callback = ((self.callbackid, status, reason)
                    if self.callbackid is not None and close else None)
        self.status = status
        charged = yield self._store_settlement(cdrs, callback)
        if charged and self.core.metrics is not None:
            self.core.metrics.charged.inc(float(charged))
        log.info("{key} {status} {reason}: charged {charged}", key=self.key, status=status,
                 reason=reason, charged=charged)
        self.finished.callback(status)
        return charged


    @defer.inlineCallbacks
    def _store_settlement(self, cdrs, callback):
        """``ledger.settle``, tried again while the database is away (a transient
        ``StoreError``), so what a call cost is never dropped; the CDRs are closed already,
        so heartbeats no longer stretch them meanwhile. Any other error is logged and left
        to recovery."""
        delay = 1.0
        while True:
            try:
                return (yield self.core.store.ledger.settle(
                    self.user.id if self.user else None, self.key, cdrs, callback))
            except StoreError as e:
                if not e.transient:
                    log.failure("settling {key} refused by the database; recovery will"
                                " settle it", key=self.key)
                    return None
                log.warn("settling {key} not stored ({e}); trying again in {delay} s",
                         key=self.key, e=e, delay=delay)
                yield task.deferLater(self.core.clock, delay, lambda: None)
                delay = min(delay * 2, 30.0)
            except Exception:
                log.failure("settling {key} failed; recovery will settle it", key=self.key)
                return None


class _BObserver:
    """The B leg's events, handed to its session."""

    def __init__(self, session: CallSession):
        self._session = session

    def legRinging(self, leg):
        pass

    def legAnswered(self, leg):
        self._session.b_answered(leg)

    def legDigit(self, leg, digit, method):
        pass

    def legPlayDone(self, leg, play_id):
        pass

    def legEnded(self, leg, cause):
        self._session.b_ended(leg, cause)
