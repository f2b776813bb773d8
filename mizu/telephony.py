"""What the core sees of telephony: legs it can originate, answer, play to and bridge.

The SIP bridge (``mizu.sip.bridge``) implements these over pjsua2 workers; a fake
(``mizu.sip.fake``) implements them for fast core tests, and one contract suite
(``tests/contract``) runs against both. Nothing here imports SIP code.

Rules every implementation keeps:
- an originated leg has its observer from the start, so no event is ever lost;
- ``observe()`` on a leg that has already ended reports ``legEnded`` at once;
- a leg never answers by itself: ``hangup()`` and ``reject()`` of an unanswered incoming
  leg send a final response of 300 or more, never 200 (a trigger call must cost A nothing);
- ending one leg never ends another: hangup propagation is the session's decision;
- operations on an ended leg fail with ``LegGone`` (``hangup`` succeeds: it is done).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger
from zope.interface import Attribute, Interface

from mizu.errors import LegGone

log = Logger()

# Who ended a leg.
LOCAL, REMOTE, TIMEOUT, WORKER, SHUTDOWN = "local", "remote", "timeout", "worker", "shutdown"


@dataclass(frozen=True)
class Invite:
    """An incoming INVITE as the core needs it, parsed from the wire."""

    request_uri: str
    from_uri: str
    to_uri: str
    pai: str
    authorization: str
    call_id: str
    source_host: str
    source_port: int


@dataclass(frozen=True)
class EndCause:
    """Why a leg ended: ``by`` whom (local, remote, timeout, worker, shutdown), a
    normalised ``cause`` for CDRs, and the SIP ``code`` and ``reason`` behind it."""

    by: str
    cause: str
    code: int
    reason: str

    @classmethod
    def of(cls, by: str, code: int, reason: str, answered: bool = False) -> EndCause:
        """The cause for a leg that ended with SIP ``code`` after being ended ``by``."""
        return cls(by, normalise(by, code, answered), code, reason)


def normalise(by: str, code: int, answered: bool = False) -> str:
    """A cause name a CDR can carry, from who ended the leg and the final SIP code."""
    if by in (WORKER, SHUTDOWN):
        return "failed" if by == WORKER else "shutdown"
    if answered or 200 <= code < 300:
        return "normal"
    if by == TIMEOUT:
        return "no_answer"
    if by == LOCAL:
        return "cancelled"
    return _REMOTE_CAUSES.get(code) or ("unavailable" if 500 <= code < 600 else "failed")


_REMOTE_CAUSES = {
    486: "busy", 600: "busy",
    408: "no_answer", 480: "no_answer", 487: "no_answer",
    404: "invalid_number", 410: "invalid_number", 484: "invalid_number", 604: "invalid_number",
    401: "rejected", 403: "rejected", 407: "rejected", 603: "rejected",
    488: "incompatible", 606: "incompatible", 415: "incompatible",
}


class ILegObserver(Interface):
    """Receives what happens on a leg."""

    def legRinging(leg):
        """The far end is ringing (180/183)."""

    def legAnswered(leg):
        """The leg is up: 200 OK sent or received and acknowledged."""

    def legDigit(leg, digit, method):
        """A DTMF digit arrived; ``method`` is rfc2833, info-relay or info-dtmf."""

    def legPlayDone(leg, play_id):
        """Playlist ``play_id`` ended by itself (or could not be played at all)."""

    def legEnded(leg, cause):
        """The leg is over; ``cause`` is an ``EndCause``."""


class ILeg(Interface):
    """One call leg, incoming or outgoing. Methods fire Deferreds when the worker obeyed."""

    id = Attribute("A name unique among live legs.")
    direction = Attribute("'in' or 'out'.")
    worker = Attribute("The index of the worker holding the leg.")
    state = Attribute("'new', 'ringing', 'answered' or 'ended'.")
    cause = Attribute("The EndCause once ended, else None.")

    def observe(observer):
        """Send this leg's events to ``observer``; an ended leg reports ``legEnded`` now."""

    def answer():
        """Answer an incoming leg (200 OK)."""

    def reject(code, reason="", headers=()):
        """Refuse an incoming leg with a final response 300-699; ``headers``: 'Name: value'."""

    def play(paths):
        """Play WAV files one after another; returns the play id ``legPlayDone`` will carry."""

    def stopPlaying():
        """Stop what is playing, without ``legPlayDone``."""

    def bridge(other):
        """Connect the audio of this leg and ``other`` (on the same worker) both ways."""

    def unbridge(other):
        """Disconnect the audio of this leg and ``other``; both legs stay up."""

    def sendDigits(digits):
        """Send DTMF digits (RFC 2833)."""

    def hangup(code=None):
        """End the leg: BYE when answered, CANCEL when dialling, else final response
        ``code`` (300-699, default 480)."""


def refusal_code(code: int | None) -> int:
    """The final response for an unanswered incoming leg: ``code`` if 300-699, else 480."""
    return code if code is not None and 300 <= code <= 699 else 480


def refuse(leg, code: int, reason: str, headers=()) -> None:
    """Reject an unanswered incoming ``leg``; one that ended meanwhile is only noted."""
    try:
        d = leg.reject(code, reason, headers)
    except LegGone:
        return
    d.addErrback(lambda f: log.info("leg {leg} not refused {code}: {e}", leg=leg.id,
                                    code=code, e=f.getErrorMessage()))


class LegBase:
    """What every ``ILeg`` implementation shares: its observer, its state and its end."""

    state = "new"
    cause: EndCause | None = None
    observer = None

    def observe(self, observer):
        self.observer = observer
        if self.state == "ended":
            self._event("legEnded", self.cause)

    def _event(self, method: str, *args) -> None:
        handler = getattr(self.observer, method, None)
        if handler is None:
            return
        try:
            handler(self, *args)
        except Exception:
            log.failure("leg observer {method} failed", method=method)

    def _live(self) -> None:
        """Raise ``LegGone`` when the leg has ended."""
        if self.state == "ended":
            raise LegGone(f"leg {self.id} has ended ({self.cause.cause})")

    def _finish(self, cause: EndCause) -> bool:
        """Mark the leg ended and tell the observer, once; False if it had ended already."""
        if self.state == "ended":
            return False
        self.state, self.cause = "ended", cause
        self._event("legEnded", cause)
        return True


class ITelephony(Interface):
    """Makes legs; the core's only way to the telephone network."""

    def originate(uri, caller, ring_timeout, observer, near=None, slots=1, headers=()):
        """Dial ``uri`` with caller ID ``caller``; fires with the new ``ILeg``.

        ``observer`` gets the leg's events from the first one on. ``near`` places the leg
        on the worker of an existing leg (to bridge them); ``slots`` = 2 keeps a slot free
        beside the new leg for its partner. Fails with ``NoCapacity``, ``ShuttingDown`` or
        ``LegGone``; cancelling the Deferred before it fires abandons the call.
        """

    def available(slots=1):
        """How many more sessions needing ``slots`` slots each could be placed now."""

    def setIncomingHandler(handler):
        """Give new incoming legs to ``handler`` (an ``IIncomingCallHandler``)."""


class IIncomingCallHandler(Interface):
    """Decides what happens to an incoming INVITE."""

    def incomingCall(leg, invite):
        """``leg`` is ringing on our side; ``invite`` is the parsed ``Invite``."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, as far as the SIP front end could tell.

    ``method`` is ``ip`` (a traffic sender's address), ``digest`` or ``anonymous``
    (let in by ``freeivraccess``); ``user`` is the authenticated end user, if any.
    """

    anumber: str
    method: str
    user: object | None = None
    sender: object | None = None


class IInboundCallHandler(Interface):
    """The callback core's entry for an incoming call whose caller is authenticated."""

    def inboundCall(leg, invite, access, caller):
        """``access`` is the access number's user row; ``caller`` a ``Caller``."""
