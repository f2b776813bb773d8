"""Both ends of the AMP link between the controller and a pjsua2 worker process."""

import os

from twisted.logger import Logger
from twisted.protocols import amp

from mizu.errors import LegGone, NoCapacity, TelephonyError
from mizu.sip import amp as cmd

log = Logger()


class ControllerLink(amp.AMP):
    """The controller's end: worker events go to ``sink`` (the SIP bridge)."""

    def __init__(self, sink):
        super().__init__()
        self.sink = sink
        self.lost = False  # the worker's end is gone (it died, or is going): no new work

    def connectionLost(self, reason):
        self.lost = True
        super().connectionLost(reason)

    def unhandledError(self, failure):
        """A command's error nobody handled: AMP would drop the link, and the worker with
        every call on it. A worker that answered with a declared error (a leg that ended
        meanwhile, say) is healthy, so that is only logged."""
        if failure.check(LegGone, NoCapacity, TelephonyError):
            log.warn("sip worker command failed unheeded: {e}", e=failure.getErrorMessage())
            return None
        return super().unhandledError(failure)

    @cmd.Incoming.responder
    def incoming(self, **invite):
        self.sink.workerIncoming(**invite)
        return {}

    @cmd.CallState.responder
    def call_state(self, leg, state, code, reason, by):
        self.sink.workerCallState(leg, state, code, reason, by)
        return {}

    @cmd.Dtmf.responder
    def dtmf(self, leg, digit, method):
        self.sink.workerDigit(leg, digit, method)
        return {}

    @cmd.PlayDone.responder
    def play_done(self, leg, play_id):
        self.sink.workerPlayDone(leg, play_id)
        return {}


class WorkerLink(amp.AMP):
    """The worker's end: commands become calls on the engine (``mizu.sip.worker.Engine``)."""

    def __init__(self, engine, on_lost=None):
        super().__init__()
        self.engine = engine
        self._on_lost = on_lost

    def connectionMade(self):
        super().connectionMade()
        self.engine.protocol = self

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.engine.protocol = None
        if self._on_lost is not None:  # the controller is gone: so are we
            self._on_lost()

    @cmd.Hello.responder
    def hello(self):
        engine = self.engine
        return {"pid": os.getpid(), "port": engine.port, "capacity": engine.capacity,
                "engine": engine.engine, "setup_rate": engine.limits.outgoing_rate}

    @cmd.Originate.responder
    def originate(self, leg, uri, caller, headers, ring_timeout):
        self.engine.originate(leg, uri, caller, headers, ring_timeout)
        return {}

    @cmd.Answer.responder
    def answer(self, leg):
        self.engine.answer(leg)
        return {}

    @cmd.Reject.responder
    def reject(self, leg, code, reason, headers):
        self.engine.reject(leg, code, reason, headers)
        return {}

    @cmd.Play.responder
    def play(self, leg, play_id, paths):
        self.engine.play(leg, play_id, paths)
        return {}

    @cmd.StopPlay.responder
    def stop_play(self, leg):
        self.engine.stop_play(leg)
        return {}

    @cmd.Bridge.responder
    def bridge(self, leg, other):
        self.engine.bridge(leg, other)
        return {}

    @cmd.Unbridge.responder
    def unbridge(self, leg, other):
        self.engine.unbridge(leg, other)
        return {}

    @cmd.SendDtmf.responder
    def send_dtmf(self, leg, digits):
        self.engine.send_dtmf(leg, digits)
        return {}

    @cmd.Hangup.responder
    def hangup(self, leg, code):
        self.engine.hangup(leg, code)
        return {}

    @cmd.Stats.responder
    def stats(self, leg):
        rx, tx = self.engine.stats(leg)
        return {"rx_packets": rx, "tx_packets": tx}
