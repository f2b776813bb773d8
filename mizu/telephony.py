"""What the core sees of telephony: legs it can originate, answer, play to and bridge.

The SIP bridge (``mizu.sip.bridge``) implements these over pjsua2 workers; a fake
(``mizu.sip.fake``) implements them for fast core tests. Nothing here imports SIP code.
"""

from __future__ import annotations

from dataclasses import dataclass

from zope.interface import Attribute, Interface


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


class ILegObserver(Interface):
    """Receives what happens on a leg (set with ``ILeg.observe``)."""

    def legRinging(leg):
        """The far end is ringing (180/183)."""

    def legAnswered(leg):
        """The leg is up: 200 OK sent or received and acknowledged."""

    def legDigit(leg, digit, method):
        """A DTMF digit arrived; ``method`` is rfc2833, info-relay or info-dtmf."""

    def legPlayDone(leg):
        """The prompt playing to the leg has ended by itself."""

    def legEnded(leg, code, reason):
        """The leg is over, with the final SIP code and a reason."""


class ILeg(Interface):
    """One call leg, incoming or outgoing. Methods fire Deferreds when the worker obeyed."""

    id = Attribute("A name unique among live legs.")
    direction = Attribute("'in' or 'out'.")
    worker = Attribute("The index of the worker holding the leg.")
    state = Attribute("'new', 'ringing', 'answered' or 'ended'.")

    def observe(observer):
        """Send this leg's events to ``observer`` (an ``ILegObserver``)."""

    def answer():
        """Answer an incoming leg (200 OK)."""

    def reject(code, reason="", headers=()):
        """Refuse an incoming leg with a final response; ``headers`` are 'Name: value'."""

    def play(path):
        """Play a WAV file; ``legPlayDone`` follows at its end."""

    def stopPlaying():
        """Stop the prompt without ``legPlayDone``."""

    def bridge(other):
        """Connect the audio of this leg and ``other`` (on the same worker) both ways."""

    def sendDigits(digits):
        """Send DTMF digits (RFC 2833)."""

    def hangup(code=200):
        """End the leg, whatever its state."""


class ITelephony(Interface):
    """Makes legs; the core's only way to the telephone network."""

    def originate(uri, caller, ring_timeout, near=None, slots=1, headers=()):
        """Dial ``uri`` with caller ID ``caller``; fires with the new ``ILeg``.

        ``near`` places the leg on the worker of an existing leg (to bridge them);
        ``slots`` = 2 keeps a slot free beside the new leg for its partner.
        """

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
