"""An in-memory ``ITelephony`` for fast core tests: legs whose far end the test plays."""

from __future__ import annotations

import itertools

from twisted.internet import defer
from zope.interface import implementer

from mizu.telephony import IIncomingCallHandler, ILeg, Invite, ITelephony


@implementer(ILeg)
class FakeLeg:
    """A leg that records what the core did and lets the test act as the far end."""

    def __init__(self, telephony, name, direction, worker=0, uri="", caller=""):
        self._telephony = telephony
        self.id, self.direction, self.worker = name, direction, worker
        self.uri, self.caller = uri, caller
        self.state = "new"
        self.observer = None
        self.partner = None
        self.actions: list[tuple] = []
        self.playing: str | None = None

    def observe(self, observer):
        self.observer = observer

    def _done(self, *action):
        if self.state == "ended":
            return defer.fail(RuntimeError(f"leg {self.id} has ended"))
        self.actions.append(action)
        return defer.succeed(None)

    def answer(self):
        d = self._done("answer")
        self.far_answers()
        return d

    def reject(self, code, reason="", headers=()):
        d = self._done("reject", code, reason, tuple(headers))
        self._end(code, reason)
        return d

    def play(self, path):
        self.playing = str(path)
        return self._done("play", str(path))

    def stopPlaying(self):
        self.playing = None
        return self._done("stop")

    def bridge(self, other):
        self.partner, other.partner = other, self
        return self._done("bridge", other.id)

    def sendDigits(self, digits):
        return self._done("digits", digits)

    def hangup(self, code=200):
        if self.state == "ended":
            return defer.succeed(None)
        d = self._done("hangup", code)
        self._end(code, "hangup")
        return d

    # -- the far end, played by the test --------------------------------------------

    def _event(self, method, *args):
        if self.observer is not None:
            getattr(self.observer, method)(self, *args)

    def far_rings(self):
        self.state = "ringing"
        self._event("legRinging")

    def far_answers(self):
        self.state = "answered"
        self._event("legAnswered")

    def far_presses(self, digits, method="rfc2833"):
        for digit in digits:
            self._event("legDigit", digit, method)

    def prompt_ends(self):
        self.playing = None
        self._event("legPlayDone")

    def far_hangs_up(self, code=200, reason="BYE"):
        self._end(code, reason)

    def _end(self, code, reason):
        if self.state == "ended":
            return
        self.state = "ended"
        self._telephony.legs.pop(self.id, None)
        self._event("legEnded", code, reason)
        partner, self.partner = self.partner, None
        if partner is not None:
            partner.partner = None
            partner.hangup()


@implementer(ITelephony)
class FakeTelephony:
    """Originated legs wait for the test to make them ring, answer or fail."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self.legs: dict[str, FakeLeg] = {}
        self.originated: list[FakeLeg] = []
        self.handler: IIncomingCallHandler | None = None
        self._names = itertools.count(1)

    def originate(self, uri, caller, ring_timeout, near=None, slots=1, headers=()):
        if len(self.legs) + slots > self.capacity:
            return defer.fail(RuntimeError("no free call slot"))
        leg = FakeLeg(self, f"f{next(self._names)}", "out",
                      worker=near.worker if near is not None else 0, uri=uri, caller=caller)
        leg.ring_timeout = ring_timeout
        self.legs[leg.id] = leg
        self.originated.append(leg)
        return defer.succeed(leg)

    def setIncomingHandler(self, handler):
        self.handler = handler

    def incoming(self, invite: Invite) -> FakeLeg:
        """The test places an incoming call; the handler sees it at once."""
        leg = FakeLeg(self, f"f{next(self._names)}", "in")
        self.legs[leg.id] = leg
        self.handler.incomingCall(leg, invite)
        return leg
