"""The AMP commands between the controller and a pjsua2 worker process.

Controller → worker: call control. Worker → controller: events. Legs are named by
strings: the controller names the legs it originates, the worker names incoming ones.
"""

from twisted.protocols import amp


class WorkerError(Exception):
    """A worker refused or failed a command (unknown leg, pjsua2 error, full)."""


class WorkerFull(WorkerError):
    """The worker has no free call slot."""


# The subclass first: AMP maps an exception by the first class it matches.
_ERRORS = {WorkerFull: b"WORKER_FULL", WorkerError: b"WORKER_ERROR"}
_Headers = amp.ListOf(amp.Unicode())


# -- controller → worker ---------------------------------------------------------------

class Hello(amp.Command):
    """Ask the worker for its pid, SIP port and real call capacity."""

    arguments = []
    response = [(b"pid", amp.Integer()), (b"port", amp.Integer()),
                (b"capacity", amp.Integer())]


class Originate(amp.Command):
    """Start an outgoing call; events for ``leg`` follow."""

    arguments = [(b"leg", amp.Unicode()), (b"uri", amp.Unicode()),
                 (b"caller", amp.Unicode()), (b"headers", _Headers),
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
                 (b"reason", amp.Unicode()), (b"headers", _Headers)]
    response = []
    errors = _ERRORS


class Play(amp.Command):
    """Play a WAV file to a leg; ``PlayDone`` follows at its end unless stopped."""

    arguments = [(b"leg", amp.Unicode()), (b"path", amp.Unicode())]
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


class SendDtmf(amp.Command):
    """Send digits to a leg by RFC 2833."""

    arguments = [(b"leg", amp.Unicode()), (b"digits", amp.Unicode())]
    response = []
    errors = _ERRORS


class Hangup(amp.Command):
    """End a leg (BYE, CANCEL or a final response, whatever its state needs)."""

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
    """A new INVITE, parsed; the controller answers, rejects or challenges it."""

    arguments = [(b"leg", amp.Unicode()), (b"request_uri", amp.Unicode()),
                 (b"from_uri", amp.Unicode()), (b"to_uri", amp.Unicode()),
                 (b"pai", amp.Unicode()), (b"authorization", amp.Unicode()),
                 (b"call_id", amp.Unicode()), (b"source", amp.Unicode())]
    response = []
    requiresAnswer = False


class CallState(amp.Command):
    """A leg rang, was answered, or ended (with the SIP code and reason)."""

    arguments = [(b"leg", amp.Unicode()), (b"state", amp.Unicode()),
                 (b"code", amp.Integer()), (b"reason", amp.Unicode())]
    response = []
    requiresAnswer = False


class Dtmf(amp.Command):
    """A digit arrived on a leg; ``method`` is rfc2833, info-relay or info-dtmf."""

    arguments = [(b"leg", amp.Unicode()), (b"digit", amp.Unicode()),
                 (b"method", amp.Unicode())]
    response = []
    requiresAnswer = False


class PlayDone(amp.Command):
    """The WAV playing to a leg reached its end."""

    arguments = [(b"leg", amp.Unicode())]
    response = []
    requiresAnswer = False
