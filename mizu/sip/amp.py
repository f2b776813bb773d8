"""The AMP commands between the controller and a pjsua2 worker process.

Controller → worker: call control. Worker → controller: events. Legs are named by
strings: the controller names the legs it originates, the worker names incoming ones.
"""

from twisted.protocols import amp

from mizu.errors import LegGone, NoCapacity, TelephonyError

# Subclasses first: AMP maps an exception by the first class it matches.
_ERRORS = {NoCapacity: b"NO_CAPACITY", LegGone: b"LEG_GONE", TelephonyError: b"TELEPHONY"}
_Lines = amp.ListOf(amp.Unicode())


# -- controller → worker ---------------------------------------------------------------

class Hello(amp.Command):
    """Ask the worker for its pid, SIP port, real call capacity, engine (e.g.
    ``wheel-2.15.1``, ``pjproject-2.17+mizu1``) and outgoing setups a second."""

    arguments = []
    response = [(b"pid", amp.Integer()), (b"port", amp.Integer()),
                (b"capacity", amp.Integer()), (b"engine", amp.Unicode()),
                (b"setup_rate", amp.Float())]


class Originate(amp.Command):
    """Start an outgoing call; events for ``leg`` follow."""

    arguments = [(b"leg", amp.Unicode()), (b"uri", amp.Unicode()),
                 (b"caller", amp.Unicode()), (b"headers", _Lines),
                 (b"ring_timeout", amp.Float())]
    response = []
    errors = _ERRORS


class Answer(amp.Command):
    """Answer an incoming call with 200 OK."""

    arguments = [(b"leg", amp.Unicode())]
    response = []
    errors = _ERRORS


class Reject(amp.Command):
    """Answer an incoming call with a final non-2xx response (headers as ``Name: value``)."""

    arguments = [(b"leg", amp.Unicode()), (b"code", amp.Integer()),
                 (b"reason", amp.Unicode()), (b"headers", _Lines)]
    response = []
    errors = _ERRORS


class Play(amp.Command):
    """Play WAV files one after another; ``PlayDone`` with ``play_id`` follows the last."""

    arguments = [(b"leg", amp.Unicode()), (b"play_id", amp.Integer()), (b"paths", _Lines)]
    response = []
    errors = _ERRORS


class StopPlay(amp.Command):
    """Stop what is playing to a leg (no ``PlayDone`` follows)."""

    arguments = [(b"leg", amp.Unicode())]
    response = []
    errors = _ERRORS


class Bridge(amp.Command):
    """Connect the audio of two legs both ways."""

    arguments = [(b"leg", amp.Unicode()), (b"other", amp.Unicode())]
    response = []
    errors = _ERRORS


class Unbridge(amp.Command):
    """Disconnect the audio of two legs both ways."""

    arguments = [(b"leg", amp.Unicode()), (b"other", amp.Unicode())]
    response = []
    errors = _ERRORS


class SendDtmf(amp.Command):
    """Send digits to a leg by RFC 2833."""

    arguments = [(b"leg", amp.Unicode()), (b"digits", amp.Unicode())]
    response = []
    errors = _ERRORS


class Hangup(amp.Command):
    """End a leg: BYE, CANCEL, or a final response ``code`` (300-699; 0 for the default)."""

    arguments = [(b"leg", amp.Unicode()), (b"code", amp.Integer())]
    response = []
    errors = _ERRORS


class Stats(amp.Command):
    """RTP packet counts of a leg's audio stream."""

    arguments = [(b"leg", amp.Unicode())]
    response = [(b"rx_packets", amp.Integer()), (b"tx_packets", amp.Integer())]
    errors = _ERRORS


# -- worker → controller ---------------------------------------------------------------

class Incoming(amp.Command):
    """A new INVITE, parsed; the controller answers, rejects or challenges it.

    ``response_headers`` (Via, From, To, Call-ID, CSeq as received) and ``transport`` let
    the controller answer the caller itself should the worker die before it could.
    """

    arguments = [(b"leg", amp.Unicode()), (b"request_uri", amp.Unicode()),
                 (b"from_uri", amp.Unicode()), (b"to_uri", amp.Unicode()),
                 (b"pai", amp.Unicode()), (b"authorization", amp.Unicode()),
                 (b"call_id", amp.Unicode()), (b"source", amp.Unicode()),
                 (b"transport", amp.Unicode()), (b"response_headers", _Lines)]
    response = []
    requiresAnswer = False


class CallState(amp.Command):
    """A leg rang, was answered, or ended (with the SIP code and reason, and ``by`` whom:
    local, remote or timeout)."""

    arguments = [(b"leg", amp.Unicode()), (b"state", amp.Unicode()),
                 (b"code", amp.Integer()), (b"reason", amp.Unicode()),
                 (b"by", amp.Unicode())]
    response = []
    requiresAnswer = False


class Dtmf(amp.Command):
    """A digit arrived on a leg; ``method`` is rfc2833, info-relay or info-dtmf."""

    arguments = [(b"leg", amp.Unicode()), (b"digit", amp.Unicode()),
                 (b"method", amp.Unicode())]
    response = []
    requiresAnswer = False


class PlayDone(amp.Command):
    """The playlist ``play_id`` reached its end (or could not be played)."""

    arguments = [(b"leg", amp.Unicode()), (b"play_id", amp.Integer())]
    response = []
    requiresAnswer = False
