"""An in-memory ``ITelephony`` for fast core tests: legs whose far end the test plays.

It keeps the same contract as the SIP bridge (``tests/contract`` runs against both): the
observer is set before any event, an unanswered incoming leg is never answered by a
hangup, ending one leg leaves its partner alone, ring timeouts end a leg ``by`` timeout.
"""

from __future__ import annotations

import itertools

from twisted.internet import defer
from zope.interface import implementer

from mizu.errors import NoCapacity, ShuttingDown
from mizu.telephony import (
    LOCAL,
    REMOTE,
    TIMEOUT,
    EndCause,
    IIncomingCallHandler,
    ILeg,
    Invite,
    ITelephony,
    LegBase,
    refusal_code,
)

PLAY_SECONDS = 0.2  # how long a file plays, with a clock

# How a scripted far end (``FakeTelephony.far_ends``) behaves, step by step.
FAR_ENDS = {
    "answer": [(0.02, "far_rings"), (0.05, "far_answers")],
    "busy": [(0.02, "far_rings"), (0.05, "far_is_busy")],
    "ring": [(0.02, "far_rings")],
    "answer_bye": [(0.02, "far_rings"), (0.05, "far_answers"), (0.5, "far_hangs_up")],
}


@implementer(ILeg)
class FakeLeg(LegBase):
    """A leg that records what the core did and lets the test act as the far end."""

    def __init__(self, telephony, name, direction, worker=0, uri="", caller=""):
        self._telephony = telephony
        self.id, self.direction, self.worker = name, direction, worker
        self.uri, self.caller = uri, caller
        self.state = "ringing" if direction == "in" else "new"
        self.partner = None
        self.actions: list[tuple] = []
        self.playing: int | None = None
        self.final_code: int | None = None  # what an incoming caller was answered
        self._timer = None

    def _done(self, *action):
        try:
            self._live()
        except Exception:
            return defer.fail()
        self.actions.append(action)
        return defer.succeed(None)

    def answer(self):
        d = self._done("answer")
        if self.state != "ended":
            self.final_code = 200
            self.far_answers()
        return d

    def reject(self, code, reason="", headers=()):
        if not 300 <= code <= 699:
            return defer.fail(ValueError(f"a rejection needs a code 300-699, not {code}"))
        d = self._done("reject", code, reason, tuple(headers))
        if self.state != "ended":
            self.final_code = code
            self._end(EndCause.of(LOCAL, code, reason))
        return d

    def play(self, paths):
        self._live()
        if isinstance(paths, str):
            paths = [paths]
        play_id = next(self._telephony.play_ids)
        self.playing = play_id
        self.actions.append(("play", play_id, tuple(str(p) for p in paths)))
        clock = self._telephony.clock
        if clock is not None:  # each file "lasts" PLAY_SECONDS
            clock.callLater(PLAY_SECONDS * len(paths), self._play_ends, play_id)
        return play_id

    def _play_ends(self, play_id):
        if self.playing == play_id and self.state != "ended":
            self.prompt_ends()

    def stopPlaying(self):
        self.playing = None
        return self._done("stop")

    def bridge(self, other):
        d = self._done("bridge", other.id)
        self.partner, other.partner = other, self
        return d

    def unbridge(self, other):
        if other.state == "ended":
            return defer.succeed(None)
        d = self._done("unbridge", other.id)
        self.partner = other.partner = None
        return d

    def sendDigits(self, digits):
        return self._done("digits", digits)

    def hangup(self, code=None):
        if self.state == "ended":
            return defer.succeed(None)
        d = self._done("hangup", code)
        if self.direction == "in" and self.state != "answered":
            self.final_code = refusal_code(code)
            self._end(EndCause.of(LOCAL, self.final_code, "hangup"))
        else:
            self._end(EndCause.of(LOCAL, 200 if self.state == "answered" else 487, "hangup",
                                  answered=self.state == "answered"))
        return d

    # -- the far end, played by the test --------------------------------------------

    def far_rings(self):
        if self.state == "new":
            self.state = "ringing"
            self._event("legRinging")

    def far_answers(self):
        if self.state in ("new", "ringing"):
            self._cancel_timer()
            self.state = "answered"
            self._event("legAnswered")

    def far_presses(self, digits, method="rfc2833"):
        for digit in digits:
            self._event("legDigit", digit, method)

    def prompt_ends(self):
        play_id, self.playing = self.playing, None
        if play_id is not None:
            self._event("legPlayDone", play_id)

    def far_is_busy(self):
        self._end(EndCause.of(REMOTE, 486, "Busy Here"))

    def far_hangs_up(self, code=200, reason="BYE"):
        if self.state != "ended":
            self._end(EndCause.of(REMOTE, code, reason, answered=self.state == "answered"))

    def ring_times_out(self):
        if self.state in ("new", "ringing"):
            self._end(EndCause.of(TIMEOUT, 487, "ring timeout"))

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _end(self, cause):
        self._cancel_timer()
        self._telephony.legs.pop(self.id, None)
        if self.partner is not None:
            self.partner.partner = None
            self.partner = None
        self._finish(cause)


@implementer(ITelephony)
class FakeTelephony:
    """Originated legs wait for the test to make them ring, answer or fail.

    With a ``clock``, ring timeouts fire and a URI listed in ``far_ends`` (URI → a name in
    ``FAR_ENDS``) behaves by itself, as SIPp would.
    """

    def __init__(self, capacity: int = 4, clock=None):
        self.capacity = capacity
        self.clock = clock
        self.legs: dict[str, FakeLeg] = {}
        self.originated: list[FakeLeg] = []
        self.far_ends: dict[str, str] = {}
        self.handler: IIncomingCallHandler | None = None
        self.stopping = False
        self._names = itertools.count(1)
        self.play_ids = itertools.count(1)

    def available(self, slots=1):
        return max(0, self.capacity - len(self.legs)) // slots

    def originate(self, uri, caller, ring_timeout, observer, near=None, slots=1, headers=()):
        if self.stopping:
            return defer.fail(ShuttingDown("shutting down: no new calls"))
        if len(self.legs) + slots > self.capacity:
            return defer.fail(NoCapacity(f"no free call slot for {slots} leg(s)"))
        leg = FakeLeg(self, f"f{next(self._names)}", "out",
                      worker=near.worker if near is not None else 0, uri=uri, caller=caller)
        leg.observe(observer)
        leg.ring_timeout = ring_timeout
        self.legs[leg.id] = leg
        self.originated.append(leg)
        if self.clock is not None:
            leg._timer = self.clock.callLater(ring_timeout, leg.ring_times_out)
            for delay, step in FAR_ENDS.get(self.far_ends.get(uri, ""), []):
                self.clock.callLater(delay, getattr(leg, step))
        return defer.succeed(leg)

    def setIncomingHandler(self, handler):
        self.handler = handler

    def incoming(self, invite: Invite) -> FakeLeg:
        """The test places an incoming call; the handler sees it at once."""
        leg = FakeLeg(self, f"f{next(self._names)}", "in")
        self.legs[leg.id] = leg
        self.handler.incomingCall(leg, invite)
        return leg
