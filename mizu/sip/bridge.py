"""The SIP bridge: supervises pjsua2 workers and gives the core legs (``ITelephony``).

Worker 0 listens on ``[sip] listen``, worker n on the port + n. Both legs of a session
go to one worker (bridging happens inside its conference bridge); call setups per
worker are limited per second, below the burst that aborts pjsua2; a worker that dies
is replaced on its port with backoff, and its legs are reported ended.
"""

from __future__ import annotations

import itertools
from collections import deque

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from mizu.config import SipConfig
from mizu.sip import amp as cmd
from mizu.sip.process import WorkerProcess
from mizu.telephony import IIncomingCallHandler, ILeg, Invite, ITelephony

log = Logger()

# Per worker. bench/sip_capacity.py: a worker answered 60 calls/s for 10 s and aborted at
# 80/s (pjsua2's select() ioqueue); outgoing setups stay well below, leaving room for
# incoming INVITEs, which cannot be paced before pjsua2 sees them.
SETUPS_PER_SECOND = 20
RESTART_DELAYS = (0.5, 1, 2, 4, 8, 15, 30)
STABLE_AFTER = 60.0  # a worker alive this long starts its backoff afresh
STOP_GRACE = 5.0


@implementer(ILeg)
class SipLeg:
    """A leg on one worker; commands go to it over AMP, events come back to the observer."""

    def __init__(self, bridge, worker, name: str, direction: str, reserved: int = 0):
        self._bridge, self._worker = bridge, worker
        self.id, self.direction = name, direction
        self.state = "new"
        self.reserved = reserved
        self.observer = None
        self.partner: SipLeg | None = None
        self.invite: Invite | None = None

    @property
    def worker(self) -> int:
        return self._worker.index

    def observe(self, observer):
        self.observer = observer

    def _call(self, command, **kwargs):
        return self._worker.call(command, leg=self.id, **kwargs)

    def answer(self):
        return self._call(cmd.Answer)

    def reject(self, code, reason="", headers=()):
        return self._call(cmd.Reject, code=code, reason=reason, headers=list(headers))

    def play(self, path):
        return self._call(cmd.Play, path=str(path))

    def stopPlaying(self):
        return self._call(cmd.StopPlay)

    def bridge(self, other):
        if other.worker != self.worker:
            return defer.fail(cmd.WorkerError("legs on different workers cannot be bridged"))

        def bridged(result):
            self.partner, other.partner = other, self
            return result

        return self._call(cmd.Bridge, other=other.id).addCallback(bridged)

    def sendDigits(self, digits):
        return self._call(cmd.SendDtmf, digits=digits)

    def hangup(self, code=200):
        if self.state == "ended":
            return defer.succeed(None)
        return self._call(cmd.Hangup, code=code)

    def stats(self):
        """RTP packets received and sent on this leg, as the worker counts them."""
        return self._call(cmd.Stats)

    def _event(self, method, *args):
        if self.observer is not None:
            handler = getattr(self.observer, method, None)
            if handler is not None:
                try:
                    handler(self, *args)
                except Exception:
                    log.failure("leg observer {method} failed", method=method)


class NoHandler:
    """Until the callback core is attached: incoming calls are refused 480."""

    def incomingCall(self, leg, invite):
        leg.reject(480, "No call handler")


@implementer(ITelephony)
class SipBridge(Service):
    """Spawns and supervises the workers; places, rate-limits and tracks every leg."""

    name = "sip"

    def __init__(self, config: SipConfig, reactor, setups_per_second=SETUPS_PER_SECOND,
                 spawn=None):
        self._config = config
        self._reactor = reactor
        self._rate = setups_per_second
        self._spawn = spawn or self._spawn_process
        self.workers: dict[int, WorkerProcess] = {}
        self.legs: dict[str, SipLeg] = {}
        self._setups: dict[int, deque] = {}
        self._restarts: dict[int, int] = {}
        self._started_at: dict[int, float] = {}
        self._names = itertools.count(1)
        self._handler = NoHandler()
        self._stopping = False
        self._drained: defer.Deferred | None = None

    def setIncomingHandler(self, handler):
        self._handler = IIncomingCallHandler(handler)

    @property
    def incoming_handler(self):
        """The handler new incoming legs go to (the triage, in a running mizu)."""
        return self._handler

    # -- lifecycle -------------------------------------------------------------------

    def _spawn_process(self, index: int) -> WorkerProcess:
        c = self._config
        return WorkerProcess(index, c.host, c.port + index, c.public_address,
                             c.max_calls, self, self._reactor)

    @defer.inlineCallbacks
    def startService(self):
        Service.startService(self)
        self._stopping = False
        try:
            yield defer.gatherResults(
                [self._start_worker(i) for i in range(self._config.workers)],
                consumeErrors=True)
        except defer.FirstError as e:
            index = e.index
            raise cmd.WorkerError(
                f"sip worker {index} (port {self._config.port + index}) did not start: "
                f"{e.subFailure.getErrorMessage()}; its output is in the log") from None

    def _start_worker(self, index: int) -> defer.Deferred:
        worker = self._spawn(index)
        self.workers[index] = worker
        self._setups[index] = deque()
        self._started_at[index] = self._reactor.seconds()
        return worker.spawn()

    @defer.inlineCallbacks
    def stopService(self):
        """Refuse new calls, give live ones ``shutdown_grace`` seconds, then stop workers."""
        Service.stopService(self)
        self._stopping = True
        if self.legs and self._config.shutdown_grace:
            log.info("waiting up to {s} s for {n} live leg(s)",
                     s=self._config.shutdown_grace, n=len(self.legs))
            self._drained = defer.Deferred()
            timer = self._reactor.callLater(self._config.shutdown_grace,
                                            self._drained.callback, None)
            yield self._drained
            if timer.active():
                timer.cancel()
        yield defer.gatherResults([w.stop(STOP_GRACE) for w in list(self.workers.values())])

    def workerEnded(self, worker, reason):
        """A worker process exited: end its legs, and replace it unless we are stopping."""
        if self.workers.get(worker.index) is not worker:
            return
        for leg in [leg for leg in self.legs.values() if leg._worker is worker]:
            self._end(leg, 500, "sip worker died")
        if self._stopping:
            return
        index = worker.index
        if self._reactor.seconds() - self._started_at.get(index, 0) > STABLE_AFTER:
            self._restarts[index] = 0
        attempt = self._restarts.get(index, 0)
        delay = RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)]
        self._restarts[index] = attempt + 1
        log.warn("sip worker {n} died ({reason}); restarting in {delay} s",
                 n=index, reason=reason.getErrorMessage(), delay=delay)
        self._reactor.callLater(delay, self._restart, index)

    def _restart(self, index: int):
        if self._stopping:
            return
        self._start_worker(index).addErrback(
            lambda f: log.error("sip worker {n} failed to start: {e}", n=index,
                                e=f.getErrorMessage()))

    # -- placing legs ------------------------------------------------------------------

    def _free(self, worker) -> int:
        used = sum(1 + leg.reserved for leg in self.legs.values() if leg._worker is worker)
        return worker.capacity - used

    def _choose(self, slots: int):
        live = [w for w in self.workers.values() if w.alive]
        fitting = [w for w in live if self._free(w) >= slots]
        if not fitting:
            raise cmd.WorkerFull(f"no sip worker has {slots} free call slot(s)")
        return max(fitting, key=lambda w: (self._free(w), -w.index))

    def _setup_delay(self, worker) -> float:
        """Seconds until this worker may start another call setup."""
        now = self._reactor.seconds()
        times = self._setups[worker.index]
        while times and now - times[0] >= 1.0:
            times.popleft()
        if len(times) < self._rate:
            times.append(now)
            return 0.0
        wait = 1.0 - (now - times[0])
        times.append(now + wait)
        return wait

    @defer.inlineCallbacks
    def originate(self, uri, caller, ring_timeout, near=None, slots=1, headers=()):
        """Dial ``uri``; fires with the new ``SipLeg`` once the worker sent the INVITE."""
        if near is not None:
            worker = near._worker
            if near.reserved:
                near.reserved -= 1
            elif self._free(worker) < 1:
                raise cmd.WorkerFull(f"sip worker {worker.index} is full")
        elif self._stopping:
            raise cmd.WorkerError("shutting down: no new calls")
        else:
            worker = self._choose(slots)
        leg = SipLeg(self, worker, f"c{next(self._names)}", "out", reserved=slots - 1)
        self.legs[leg.id] = leg
        delay = self._setup_delay(worker)
        if delay:
            yield task.deferLater(self._reactor, delay, lambda: None)
        try:
            yield worker.call(cmd.Originate, leg=leg.id, uri=uri, caller=caller or "",
                              headers=list(headers), ring_timeout=float(ring_timeout))
        except Exception:
            self.legs.pop(leg.id, None)
            raise
        return leg

    # -- events from workers -------------------------------------------------------------

    def workerIncoming(self, leg, request_uri, from_uri, to_uri, pai, authorization,
                       call_id, source):
        worker = self._worker_of_name(leg)
        if self._stopping:
            worker.call(cmd.Reject, leg=leg, code=503, reason="Shutting down", headers=[])
            return
        host, _, port = source.rpartition(":")
        invite = Invite(request_uri, from_uri, to_uri, pai, authorization, call_id,
                        host.strip("[]"), int(port) if port.isdigit() else 0)
        sip_leg = SipLeg(self, worker, leg, "in")
        sip_leg.invite = invite
        self.legs[leg] = sip_leg
        try:
            self._handler.incomingCall(sip_leg, invite)
        except Exception:
            log.failure("incoming call handler failed")
            sip_leg.reject(500, "Server Internal Error")

    def _worker_of_name(self, leg_name: str):
        # incoming legs are named w<port>-<n> by their worker
        port = int(leg_name[1:].split("-")[0])
        return self.workers[port - self._config.port]

    def workerCallState(self, leg, state, code, reason):
        sip_leg = self.legs.get(leg)
        if sip_leg is None:
            return
        if state == "ended":
            self._end(sip_leg, code, reason)
        elif state == "answered":
            sip_leg.state = "answered"
            sip_leg._event("legAnswered")
        elif state == "ringing" and sip_leg.state == "new":
            sip_leg.state = "ringing"
            sip_leg._event("legRinging")

    def _end(self, leg, code, reason):
        self.legs.pop(leg.id, None)
        if not self.legs and self._drained is not None and not self._drained.called:
            self._drained.callback(None)
        if leg.state != "ended":
            leg.state = "ended"
            leg._event("legEnded", code, reason)
        partner, leg.partner = leg.partner, None
        if partner is not None and partner.state != "ended":
            partner.partner = None
            # a bridge ends as a whole: the other side hears the hangup too
            partner.hangup().addErrback(lambda f: log.info(
                "hanging up {leg} after its partner: {e}", leg=partner.id,
                e=f.getErrorMessage()))

    def workerDigit(self, leg, digit, method):
        sip_leg = self.legs.get(leg)
        if sip_leg is not None:
            sip_leg._event("legDigit", digit, method)

    def workerPlayDone(self, leg):
        sip_leg = self.legs.get(leg)
        if sip_leg is not None:
            sip_leg._event("legPlayDone")

    # -- console -----------------------------------------------------------------------

    def status_lines(self) -> list[str]:
        """``sip worker <n> pid=<pid> port=<port> calls=<in use>/<capacity>`` per worker."""
        lines = []
        for index in sorted(self.workers):
            w = self.workers[index]
            in_use = sum(1 for leg in self.legs.values() if leg._worker is w)
            lines.append(f"sip worker {index} pid={w.pid} port={w.port} "
                         f"calls={in_use}/{w.capacity}")
        return lines

    def call_lines(self) -> list[str]:
        """One line per live leg."""
        return [f"leg {leg.id} {leg.direction} worker={leg.worker} state={leg.state}"
                + (f" from={leg.invite.from_uri} to={leg.invite.request_uri}"
                   if leg.invite else "")
                for leg in self.legs.values()]
