"""A callback: dial A, run the campaign's IVR when A answers, connect B, settle.

The row was claimed by the dispatcher (status ``calling_a``); everything that can go wrong
ends the row ``failed`` with a reason, and every leg that was dialled gets a CDR.
"""

from __future__ import annotations

from decimal import Decimal

from twisted.internet import defer
from twisted.logger import Logger

from mizu.dispatch.session import WORKER_DIED, CallSession, LegRecord
from mizu.dispatch.tables import BUILTIN_CALLBACK
from mizu.errors import InsufficientCredit, LimitReached, MizuError, NoCapacity, ShuttingDown
from mizu.ivr.session import IvrSession

log = Logger()

# IVR outcomes that mean the callback did its job.
_DONE = {"completed", "cut"}

_REASONS = {
    "busy": "B busy", "no_answer": "B did not answer", "failed": "B could not be reached",
    "no_credit": "insufficient credit", "no_route": "no rate or route for B",
    "auth_failed": "PIN not accepted", "timeout": "no destination entered",
    "no_destination": "no destination entered", "caller_hangup": "A hung up",
    "hangup": "IVR ended", "cancelled": "A hung up while B was dialled",
}


SHUTDOWN = "shutdown: the node stopped and [sip] shutdown_grace ran out"


class CallbackCall(CallSession):
    """Calls A back for one claimed ``tb_callbacks`` row."""

    def __init__(self, core, row, user, ivr_limits):
        super().__init__(
            core, f"cb{row.id}", user=user, authenticated=row.authenticated,
            destination=row.bnum, anumber=row.anum, accessnumber=row.accessnumber,
            callbackid=row.id, add_anumber=core.settings().anumberhandling in (1, 3),
            callerid=(row.callerid or core.settings().callbackcallernumber
                      or row.accessnumber),
            # A row naming its user without vouching for them: the PIN must be theirs.
            pin="if-needed" if row.authenticated or row.userid is None else "always")
        self.row = row
        self._limits = ivr_limits
        self._ivr = None

    @defer.inlineCallbacks
    def start(self):
        """Dial A; the rest follows from A's events. Fires when A is ringing or refused."""
        tables, config = self.core.tables(), self.core.config()
        self.a = LegRecord("A", self.callerid, self.anumber,
                           tables.rates.rate(self.anumber), start=self._now())
        uri = tables.gateway_uri(self.anumber)
        if uri is None:
            self.a = None
            yield self.settle("failed", "no route for A (no tb_routes prefix and no "
                                        "[sip] default_gateway)")
            return
        blocked = tables.blocked_prefix(self.anumber)
        if blocked is not None:
            self.a = None
            log.warn("fraud guard: callback {id} not dialled: A {anum} is under blocked "
                     "prefix {prefix}", id=self.row.id, anum=self.anumber, prefix=blocked)
            yield self.settle("failed", f"A-number {self.anumber} is not allowed: {blocked} "
                                        "is a blocked (premium-rate or fraud-risk) destination")
            return
        if self.authenticated:
            tariff = self.a.tariff
            minimum = tariff.cost(0) if tariff is not None else Decimal(0)
            limits = self.limits()
            if minimum > 0 or limits.max_calls or limits.daily_cap:
                try:  # the day's spend must leave room for A's first block at least
                    got = yield self._reserve(minimum, minimum, tariff.cost(1) if tariff
                                              else Decimal(0))
                except (InsufficientCredit, LimitReached) as e:
                    self.a = None
                    if isinstance(e, LimitReached):
                        self._limited(e)
                    yield self.settle("failed", self.refusal or "insufficient credit")
                    return
                self.reserved += got.amount
        self.status = "calling_a"
        try:
            self.a_leg = yield self.core.telephony.originate(
                uri, self.callerid, config.callback.ring_timeout, self, slots=2)
        except (NoCapacity, ShuttingDown) as e:
            yield self._requeue(str(e))
        except MizuError as e:
            self.a.ended, self.a.result = self._now(), "failed"
            yield self.settle("failed", f"A could not be dialled: {e}")

    @defer.inlineCallbacks
    def _requeue(self, why: str):
        """No room for the call now: release what we hold and put the row back."""
        self.status = "requeued"
        yield self.core.store.ledger.settle(
            self.user.id if self.user else None, self.key, [], None)
        yield self.core.store.callbacks.requeue(self.row.id, 2.0, f"waiting: {why}",
                                                dialled=False)
        self.finished.callback("requeued")

    # -- A's events until it answers (then the IVR observes it) ----------------------------
    def legRinging(self, leg):
        pass

    def legDigit(self, leg, digit, method):
        pass

    def legPlayDone(self, leg, play_id):
        pass

    def legAnswered(self, leg):
        self.a.answered = self._now()
        self._open_cdr(self.a)
        self._set_status("ivr")
        tables = self.core.tables()
        script = tables.script_for(self.row.ivrid or self.core.settings().defcallbackivr,
                                   BUILTIN_CALLBACK)
        self._ivr = IvrSession(leg, script, self, tables.prompts, self.core.clock,
                               self._limits, name=self.key, on_ended=self._a_ended)
        self.core.run_ivr(self._ivr).addCallback(self._ivr_done)

    def legEnded(self, leg, cause):
        # Only before the answer: afterwards the IVR session observes A.
        self._a_ended(cause)
        if self.a.answered is None:
            reason = {"busy": "A busy", "no_answer": "A did not answer"}.get(
                cause.cause, f"A-leg {cause.cause} ({cause.code} {cause.reason})".strip())
            config = self.core.config().callback
            if cause.cause in ("busy", "no_answer") and self.row.attempts < config.max_attempts:
                self._retry(reason, config)
            else:
                self.settle("failed", reason)

    @defer.inlineCallbacks
    def _retry(self, reason, config):
        """A was busy or did not answer: try again after ``retry_delay``."""
        yield self.settle("pending", reason, close=False)
        why = f"{reason}; attempt {self.row.attempts + 1} of {config.max_attempts} " \
              f"in {config.retry_delay} s"
        yield self.core.store.callbacks.requeue(self.row.id, config.retry_delay, why)
        log.info("callback {id}: {why}", id=self.row.id, why=why)

    @defer.inlineCallbacks
    def _ivr_done(self, outcome: str):
        if self.a_leg is not None and self.a_leg.state != "ended":
            self.a_leg.hangup()
        yield self.b_over()
        if self.a.result in ("", "normal") and (outcome in _REASONS or outcome in _DONE):
            self.a.result = "normal"
        if self.ended_by(WORKER_DIED):
            yield self.settle("failed", "worker died: the call's SIP worker process ended")
        elif outcome in _DONE or (self.b is not None and self.b.answered is not None):
            cut = f"cut: {self.refusal or 'credit used up'}" if outcome == "cut" else ""
            yield self.settle("completed", SHUTDOWN if self.ended_by("shutdown") else cut)
        else:
            yield self.settle("failed", self.refusal or _REASONS.get(outcome, outcome))
