"""The SIP bridge: supervises pjsua2 workers and gives the core legs (``ITelephony``).

Worker 0 listens on ``[sip] listen``, worker n on the port + n. Both legs of a session
go to one worker (bridging happens inside its conference bridge); call setups per
worker are limited per second, below the burst that aborts pjsua2; a worker that dies
is replaced on its port, its legs are reported ended, and callers it left unanswered
get a ``503`` from the controller.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import secrets

from twisted.application.service import Service
from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mizu.config import SipConfig
from mizu.errors import LegGone, NoCapacity, ShuttingDown, TelephonyError
from mizu.sip import amp as cmd
from mizu.sip import sipmsg
from mizu.sip.process import WorkerProcess
from mizu.telephony import (
    LOCAL,
    REMOTE,
    SHUTDOWN,
    WORKER,
    EndCause,
    IIncomingCallHandler,
    ILeg,
    Invite,
    ITelephony,
    LegBase,
)

log = Logger()

# Per worker, evenly spaced, at the rate its Hello reports: the worker's own outgoing
# budget (mizu.sip.engine) is that rate with a burst, so a paced controller is never
# refused. This one is for a worker that reported none.
SETUPS_PER_SECOND = 15
# Only failed starts (no Hello) lengthen the wait: a worker that came up and was then
# killed by traffic is back in 0.5 s, so hostile packets cannot keep it down for long.
RESTART_DELAYS = (0.5, 1, 2, 4, 8, 15, 30)
STOP_GRACE = 5.0


@implementer(ILeg)
class SipLeg(LegBase):
    """A leg on one worker; commands go to it over AMP, events come back to the observer."""

    def __init__(self, bridge, worker, name: str, direction: str, reserved: int = 0):
        self._bridge, self._worker = bridge, worker
        self.id, self.direction = name, direction
        self.state = "ringing" if direction == "in" else "new"
        self.reserved = reserved
        self.invite: Invite | None = None
        # Until an incoming leg is decided: what the controller needs to answer the
        # caller itself, should the worker die first (transport, source, header lines).
        self.undecided: tuple[str, str, list[str]] | None = None
        self.abandoned = False  # originate was cancelled after the INVITE went out
        self.hanging_up = False  # our hangup is on its way: nothing more is played

    @property
    def worker(self) -> int:
        return self._worker.index

    def _call(self, command, **kwargs):
        if self.state == "ended":
            return defer.fail(LegGone(f"leg {self.id} has ended ({self.cause.cause})"))
        return self._worker.call(command, leg=self.id, **kwargs)

    def answer(self):
        self.undecided = None
        return self._call(cmd.Answer)

    def reject(self, code, reason="", headers=()):
        if not 300 <= code <= 699:
            return defer.fail(ValueError(f"a rejection needs a code 300-699, not {code}"))
        self.undecided = None
        return self._call(cmd.Reject, code=code, reason=reason, headers=list(headers))

    def play(self, paths):
        self._live()
        if self.hanging_up:
            raise LegGone(f"leg {self.id} is being hung up")
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        play_id = next(self._bridge.play_ids)

        def failed(failure):
            log.warn("leg {leg}: cannot play {paths}: {e}", leg=self.id,
                     paths=[str(p) for p in paths], e=failure.getErrorMessage())
            if self.state != "ended":
                self._event("legPlayDone", play_id)  # the session moves on

        self._call(cmd.Play, play_id=play_id, paths=[str(p) for p in paths]).addErrback(failed)
        return play_id

    def stopPlaying(self):
        return self._call(cmd.StopPlay)

    def bridge(self, other):
        if other.worker != self.worker:
            return defer.fail(TelephonyError("legs on different workers cannot be bridged"))
        return self._call(cmd.Bridge, other=other.id)

    def unbridge(self, other):
        if other.state == "ended":
            return defer.succeed(None)  # its audio left the bridge with it
        return self._call(cmd.Unbridge, other=other.id)

    def sendDigits(self, digits):
        return self._call(cmd.SendDtmf, digits=digits)

    def hangup(self, code=None):
        if self.state == "ended" or not self._worker.alive:
            # A dead worker's legs are all ended by workerEnded, in this same turn.
            return defer.succeed(None)
        self.undecided = None
        self.hanging_up = True
        # The worker may have ended the call already (a BYE crossing ours, or a second
        # hangup before the first one was reported): a leg gone is a leg hung up.
        return self._call(cmd.Hangup, code=code or 0).addErrback(_already_gone)

    def stats(self):
        """RTP packets received and sent on this leg, as the worker counts them."""
        return self._call(cmd.Stats)


def _already_gone(failure):
    failure.trap(LegGone)


class WorkerDied(NoCapacity):
    """The worker a leg was being set up on died (or was gone) before it confirmed the
    INVITE: no slot after all, so a callback is put back instead of failing."""


class NoHandler:
    """Until the callback core is attached: incoming calls are refused 480."""

    def incomingCall(self, leg, invite):
        leg.reject(480, "No call handler")


@implementer(ITelephony)
class SipBridge(Service):
    """Spawns and supervises the workers; places, rate-limits and tracks every leg."""

    name = "sip"

    def __init__(self, config: SipConfig, reactor, setups_per_second: float | None = None,
                 spawn=None):
        """``setups_per_second``: outgoing setups per worker; by default each worker's own."""
        self._config = config
        self._reactor = reactor
        self._rate = setups_per_second
        self._spawn = spawn or self._spawn_process
        self.workers: dict[int, WorkerProcess] = {}
        self.legs: dict[str, SipLeg] = {}
        self.play_ids = itertools.count(1)
        self._next_setup: dict[int, float] = {}  # index → when its next setup may start
        self._failed_starts: dict[int, int] = {}  # index → starts in a row without Hello
        self._up: set = set()  # workers that said Hello and have not ended
        self._restarts: dict[int, object] = {}  # index → the pending restart's DelayedCall
        self._names = itertools.count(1)
        self._handler = NoHandler()
        self._stopping = False
        self._drained: defer.Deferred | None = None
        self._udp = None  # for the controller's own 503s

    def setIncomingHandler(self, handler):
        self._handler = IIncomingCallHandler(handler)

    @property
    def incoming_handler(self):
        """The handler new incoming legs go to (the triage, in a running mizu)."""
        return self._handler

    def reconfigService(self, config, settings) -> None:
        """Take the [sip] keys that can change live; the rest is reported by reload."""
        self._config = dataclasses.replace(
            self._config, default_gateway=config.sip.default_gateway,
            shutdown_grace=config.sip.shutdown_grace)

    # -- lifecycle -------------------------------------------------------------------

    def share(self, index: int) -> int:
        """Worker ``index``'s part of the node's ``[sip] max_calls``."""
        c = self._config
        return max(1, c.max_calls // c.workers + (1 if index < c.max_calls % c.workers else 0))

    def _spawn_process(self, index: int) -> WorkerProcess:
        c = self._config
        return WorkerProcess(index, c.host, c.port + index, c.public_address,
                             self.share(index), self, self._reactor, c.log_level)

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
            raise TelephonyError(
                f"sip worker {index} (port {self._config.port + index}) did not start: "
                f"{e.subFailure.getErrorMessage()}") from None

    def _start_worker(self, index: int) -> defer.Deferred:
        worker = self._spawn(index)
        self.workers[index] = worker
        d = worker.spawn()

        def started(result):
            self._failed_starts[index] = 0
            self._up.add(worker)
            return result

        return d.addCallback(started)

    @defer.inlineCallbacks
    def stopService(self):
        """Refuse new calls, give live ones ``shutdown_grace`` seconds, then stop workers."""
        Service.stopService(self)
        self._stopping = True
        for timer in self._restarts.values():
            if timer.active():
                timer.cancel()
        self._restarts.clear()
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
        if self._udp is not None:
            yield self._udp.stopListening()
            self._udp = None

    def workerEnded(self, worker, reason):
        """A worker process exited: end its legs, and replace it unless we are stopping."""
        if self.workers.get(worker.index) is not worker:
            return
        if worker in self._up:
            self._up.discard(worker)
        else:
            self._failed_starts[worker.index] = self._failed_starts.get(worker.index, 0) + 1
        by, why = (SHUTDOWN, "shutdown") if self._stopping else (WORKER, "sip worker died")
        for leg in [leg for leg in self.legs.values() if leg._worker is worker]:
            if leg.undecided is not None:
                self._refuse_orphan(leg)
            self._end(leg, EndCause.of(by, 500, why))
        if not self._stopping:
            self._schedule_restart(worker.index, reason.getErrorMessage())

    def _schedule_restart(self, index: int, why: str):
        if index in self._restarts and self._restarts[index].active():
            return
        attempt = self._failed_starts.get(index, 0)
        delay = RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)]
        log.warn("sip worker {n} ended ({reason}); restarting in {delay} s",
                 n=index, reason=why, delay=delay)
        self._restarts[index] = self._reactor.callLater(delay, self._restart, index)

    def _restart(self, index: int):
        self._restarts.pop(index, None)
        if self._stopping:
            return
        try:
            d = self._start_worker(index)
        except Exception as e:  # could not even spawn (fork failed, fd limit)
            self._failed_starts[index] = self._failed_starts.get(index, 0) + 1
            self._schedule_restart(index, f"spawn failed: {e}")
            return
        # A start that fails ends the process, and workerEnded schedules the next try.
        d.addErrback(lambda f: log.error("sip worker {n} failed to start: {e}", n=index,
                                         e=f.getErrorMessage()))

    def _refuse_orphan(self, leg: SipLeg):
        """Answer 503 to a UDP caller whose INVITE died with its worker, undecided."""
        transport, source, lines = leg.undecided
        leg.undecided = None
        host, _, port = source.rpartition(":")
        if transport != "udp" or not port.isdigit() or not lines:
            return  # TCP: the caller saw its connection close
        if self._udp is None:
            self._udp = self._reactor.listenUDP(0, protocol.DatagramProtocol())
        response = sipmsg.stateless_response(lines, 503, "Service Unavailable",
                                             secrets.token_hex(6), ("Retry-After: 5",))
        try:
            self._udp.write(response, (host.strip("[]"), int(port)))
            log.info("answered 503 to {source} for {leg}: its worker died", source=source,
                     leg=leg.id)
        except OSError as e:
            log.warn("cannot answer {source}: {e}", source=source, e=e)

    # -- placing legs ------------------------------------------------------------------

    def _free(self, worker) -> int:
        used = sum(1 + leg.reserved for leg in self.legs.values() if leg._worker is worker)
        return worker.capacity - used

    def available(self, slots=1) -> int:
        if self._stopping:
            return 0
        return sum(max(0, self._free(w)) // slots for w in self.workers.values() if w.alive)

    def _place(self, near, slots):
        """The worker for a new leg; takes the slot ``near`` kept for its partner."""
        if self._stopping:
            raise ShuttingDown("shutting down: no new calls")
        if near is not None:
            if near.state == "ended":
                raise LegGone(f"leg {near.id} has ended")
            if near.reserved:
                near.reserved -= 1
                return near._worker, True
            if self._free(near._worker) < 1:
                raise NoCapacity(f"sip worker {near.worker} is full")
            return near._worker, False
        fitting = [w for w in self.workers.values() if w.alive and self._free(w) >= slots]
        if not fitting:
            raise NoCapacity(f"no sip worker has {slots} free call slot(s)")
        return max(fitting, key=lambda w: (self._free(w), -w.index)), False

    def _setup_delay(self, worker) -> float:
        """Seconds until this worker may start another call setup (1/rate apart)."""
        now = self._reactor.seconds()
        at = max(now, self._next_setup.get(worker.index, now))
        rate = self._rate or worker.setup_rate or SETUPS_PER_SECOND
        self._next_setup[worker.index] = at + 1.0 / rate
        return at - now

    def originate(self, uri, caller, ring_timeout, observer, near=None, slots=1, headers=()):
        """Dial ``uri``; fires with the new ``SipLeg`` once the worker sent the INVITE.

        Cancelling the Deferred while the setup waits for its turn frees its slot at once;
        once the INVITE is out, the leg is hung up as soon as the worker confirms it.
        """
        try:
            worker, took_reserved = self._place(near, slots)
        except TelephonyError:
            return defer.fail()
        leg = SipLeg(self, worker, f"c{next(self._names)}", "out", reserved=slots - 1)
        leg.observe(observer)
        self.legs[leg.id] = leg
        state = {"pacing": None, "sent": False}

        def give_back():
            self.legs.pop(leg.id, None)
            leg.state = "ended"
            leg.cause = EndCause.of(LOCAL, 487, "abandoned")
            if took_reserved and near.state != "ended":
                near.reserved += 1

        def cancel(d):
            if state["pacing"] is not None and state["pacing"].active():
                state["pacing"].cancel()
                give_back()
            elif state["sent"]:
                leg.abandoned = True  # hung up when the worker confirms the INVITE

        result = defer.Deferred(cancel)

        def sent(_):
            if leg.abandoned:
                leg.hangup().addErrback(lambda f: None)
            elif leg.state == "ended":
                result.errback(LegGone(f"leg {leg.id} ended while dialling"))
            else:
                result.callback(leg)

        def refused(failure):
            if leg.state != "ended":
                give_back()
            if not worker.alive and not failure.check(WorkerDied):
                # the link or the process went away under the command, not a refusal
                failure = Failure(WorkerDied(
                    f"sip worker {worker.index} died before it dialled {uri}"))
            if not result.called:
                result.errback(failure)

        def dial():
            state["pacing"] = None
            if leg.state == "ended":  # its worker died while it waited
                result.errback(WorkerDied(f"leg {leg.id} ended before dialling"
                                          f" ({leg.cause.cause}): its worker died"))
                return
            state["sent"] = True
            worker.call(cmd.Originate, leg=leg.id, uri=uri, caller=caller or "",
                        headers=list(headers), ring_timeout=float(ring_timeout)
                        ).addCallbacks(sent, refused)

        delay = self._setup_delay(worker)
        if delay:
            state["pacing"] = self._reactor.callLater(delay, dial)
        else:
            dial()
        return result

    # -- events from workers -------------------------------------------------------------

    def workerIncoming(self, leg, request_uri, from_uri, to_uri, pai, authorization,
                       call_id, source, transport="", response_headers=()):
        worker = self._worker_of_name(leg)
        if self._stopping:
            worker.call(cmd.Reject, leg=leg, code=503, reason="Shutting down", headers=[]
                        ).addErrback(lambda f: None)
            return
        host, _, port = source.rpartition(":")
        invite = Invite(request_uri, from_uri, to_uri, pai, authorization, call_id,
                        host.strip("[]"), int(port) if port.isdigit() else 0)
        sip_leg = SipLeg(self, worker, leg, "in")
        sip_leg.invite = invite
        sip_leg.undecided = (transport, source, list(response_headers))
        self.legs[leg] = sip_leg
        try:
            self._handler.incomingCall(sip_leg, invite)
        except Exception:
            log.failure("incoming call handler failed")
            sip_leg.reject(500, "Server Internal Error").addErrback(lambda f: None)

    def _worker_of_name(self, leg_name: str):
        # incoming legs are named w<port>-<n> by their worker
        port = int(leg_name[1:].split("-")[0])
        return self.workers[port - self._config.port]

    def workerCallState(self, leg, state, code, reason, by=REMOTE):
        sip_leg = self.legs.get(leg)
        if sip_leg is None:
            return
        if state == "ended":
            answered = sip_leg.state == "answered"
            self._end(sip_leg, EndCause.of(by or REMOTE, code, reason, answered))
        elif state == "answered":
            sip_leg.state = "answered"
            sip_leg._event("legAnswered")
        elif state == "ringing" and sip_leg.state == "new":
            sip_leg.state = "ringing"
            sip_leg._event("legRinging")

    def _end(self, leg, cause):
        self.legs.pop(leg.id, None)
        if not self.legs and self._drained is not None and not self._drained.called:
            self._drained.callback(None)
        leg.undecided = None
        leg._finish(cause)

    def workerDigit(self, leg, digit, method):
        sip_leg = self.legs.get(leg)
        if sip_leg is not None:
            sip_leg._event("legDigit", digit, method)

    def workerPlayDone(self, leg, play_id):
        sip_leg = self.legs.get(leg)
        if sip_leg is not None:
            sip_leg._event("legPlayDone", play_id)

    # -- console -----------------------------------------------------------------------

    def status_lines(self) -> list[str]:
        """``sip worker <n> pid=<pid> port=<port> calls=<in use>/<capacity> engine=<engine>``
        per worker (the engine once it said Hello: ``wheel-2.15.1``, ``pjproject-2.17+mizu1``)."""
        lines = []
        for index in sorted(self.workers):
            w = self.workers[index]
            in_use = sum(1 for leg in self.legs.values() if leg._worker is w)
            line = f"sip worker {index} pid={w.pid} port={w.port} calls={in_use}/{w.capacity}"
            if w.engine:
                line += f" engine={w.engine}"
            if not w.alive:
                why = getattr(w, "last_error", "")
                line += " down" + (f" ({why})" if why else "")
            lines.append(line)
        return lines

    def call_lines(self) -> list[str]:
        """One line per live leg."""
        return [f"leg {leg.id} {leg.direction} worker={leg.worker} state={leg.state}"
                + (f" from={leg.invite.from_uri} to={leg.invite.request_uri}"
                   if leg.invite else "")
                for leg in self.legs.values()]
