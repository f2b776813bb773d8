"""Incoming calls to an access number, after SIP triage: drop, call back, or answer the IVR.

The policy (``mizu.dispatch.policy``) decides. A callback trigger is never answered: it is
refused (480) once the request is stored, so A pays nothing. Each trigger gets an ``in``
CDR with what became of it. A calling-card call is answered into its campaign's IVR.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mizu.dispatch import policy
from mizu.dispatch.request import CallbackRequest
from mizu.dispatch.session import WORKER_DIED, CallSession, LegRecord
from mizu.dispatch.tables import BUILTIN_CALLBACK, BUILTIN_CARD
from mizu.errors import LegGone, MizuError
from mizu.ivr.session import IvrSession
from mizu.store.ledger import Cdr
from mizu.telephony import IInboundCallHandler, refuse

log = Logger()


def session_key() -> str:
    """A key for a call with no callback row, unique across nodes and restarts (reservations
    and CDRs are grouped by it)."""
    return f"in{uuid.uuid4().hex[:16]}"


@implementer(IInboundCallHandler)
class Inbound:
    """The callback core's side of SIP triage."""

    def __init__(self, dispatcher):
        self._dispatcher = dispatcher

    @property
    def core(self):
        return self._dispatcher.core

    def inboundCall(self, leg, invite, access, caller):
        if self._dispatcher.draining:
            refuse(leg, 503, "Service Unavailable", ["Retry-After: 60"])
            return
        self._handle(leg, access, caller).addErrback(self._failed, leg)

    def _failed(self, failure, leg):
        log.failure("incoming call {leg} failed", failure, leg=leg.id)
        if leg.state != "ended":
            if leg.state == "answered":
                leg.hangup()
            else:
                refuse(leg, 500, "Server Internal Error")

    @defer.inlineCallbacks
    def _handle(self, leg, access, caller):
        settings = self.core.settings()
        ani_user = None
        if caller.anumber:
            ani_user = yield self.core.store.users.by_anumber(caller.anumber)
        decision = policy.decide(access, caller, ani_user, settings)
        log.info("call from {anum} to {access}: {action} ({reason})", anum=caller.anumber,
                 access=access.username, action=decision.action, reason=decision.reason)
        if leg.state == "ended":
            yield self._record_trigger(access, caller, decision, "cancelled")
            return
        if decision.action == policy.DROP:
            refuse(leg, 403, "Forbidden")
            yield self._record_trigger(access, caller, decision, "dropped")
        elif decision.action == policy.CALLBACK:
            yield self._call_back(leg, access, caller, decision)
        else:
            yield self._answer(leg, access, caller, decision, ani_user)

    @defer.inlineCallbacks
    def _call_back(self, leg, access, caller, decision):
        request = CallbackRequest(
            anum=caller.anumber, source="ani", userid=decision.userid, trusted=True,
            accessnumber=access.username, campaign=decision.campaign,
            callerid=decision.caller_id)
        try:
            cbid = yield self._dispatcher.submit(request, authenticated=decision.authenticated)
        except MizuError as e:
            log.warn("callback for {anum} not stored: {e}", anum=caller.anumber, e=e)
            refuse(leg, 503, "Service Unavailable")
            yield self._record_trigger(access, caller, decision, f"failed: {e}")
            return
        # Stored: now refuse the trigger (never answered, so A pays nothing).
        refuse(leg, 480, "Temporarily Unavailable")
        yield self._record_trigger(access, caller, decision, "callback", cbid)

    def _record_trigger(self, access, caller, decision, result, callbackid=None):
        now = self.core.clock.seconds()
        cdr = Cdr(leg="in", caller=caller.anumber, callee=access.username,
                  callbackid=callbackid, userid=decision.userid, accessnumber=access.username,
                  starttime=now, endtime=now, result=result, node=self.core.node)
        d = self.core.store.ledger.settle(None, session_key(), [cdr], None)
        d.addErrback(lambda f: log.warn("trigger CDR not stored: {e}", e=f.getErrorMessage()))
        return d

    @defer.inlineCallbacks
    def _answer(self, leg, access, caller, decision, ani_user):
        user = decision.userid and (yield self.core.store.users.by_id(decision.userid))
        if decision.pin == "always" and ani_user is not None:
            user = ani_user  # A-number and PIN: the PIN must be this user's
        card = CardCall(self.core, session_key(), leg, access, caller, decision,
                        user or None, self._dispatcher.ivr_limits())
        self._dispatcher.track(card)
        yield card.start()


class CardCall(CallSession):
    """A calling-card call: the incoming leg is answered into the campaign's IVR."""

    def __init__(self, core, key, leg, access, caller, decision, user, limits):
        super().__init__(core, key, user=user, authenticated=decision.authenticated,
                         anumber=caller.anumber, accessnumber=access.username,
                         add_anumber=decision.add_anumber, pin=decision.pin)
        self.a_leg = leg
        self._decision = decision
        self._limits = limits
        self.a = LegRecord("in", caller.anumber, access.username, None, start=self._now())

    def start(self):
        tables = self.core.tables()
        script = tables.script_for(self._decision.campaign, BUILTIN_CARD
                                   if self._decision.action == policy.IVR else BUILTIN_CALLBACK)
        self.status = "ivr"
        ivr = IvrSession(self.a_leg, script, self, tables.prompts, self.core.clock,
                         self._limits, name=self.key, on_ended=self._a_ended)
        d = self.a_leg.answer()
        d.addCallback(lambda _: self._answered())
        d.addCallback(lambda _: self.core.run_ivr(ivr))
        d.addCallback(self._ivr_done)
        d.addErrback(self._gone)
        return defer.succeed(None)

    def _answered(self):
        self.a.answered = self._now()
        self._open_cdr(self.a)

    def _gone(self, failure):
        failure.trap(LegGone)
        self.a.ended, self.a.result = self._now(), "cancelled"
        return self.settle("failed", "caller hung up before the answer")

    @defer.inlineCallbacks
    def _ivr_done(self, outcome: str):
        if self.a_leg.state != "ended":
            self.a_leg.hangup()
        yield self.b_over()
        status = "completed" if self.b is not None and self.b.answered else "failed"
        if self.ended_by("shutdown"):
            outcome = "shutdown"
        elif self.ended_by(WORKER_DIED):
            status, outcome = "failed", WORKER_DIED
        yield self.settle(status, f"{outcome}: {self.refusal}" if self.refusal else outcome)
