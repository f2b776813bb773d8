"""A pjsua2 worker process: one Endpoint on one SIP port, driven over AMP on fd 3.

Run by the controller as ``python -m mizu.sip.worker --port N ...``. pjsua2 may abort
this process (the README's SIP section says when); the controller then replaces it.
The rules that keep pjsua2 alive are kept here: the Endpoint lives in the reactor
thread and is polled, the Engine holds the only strong reference to each ``Call``,
and admission (``mizu.sip.admission``) keeps what pjsua's media cannot survive out.
Which pjsua2 it runs on (the PyPI wheel, or the engine ``tools/build-engine`` builds) is
read from the engine at start and sets its capacity and setup budgets (``mizu.sip.engine``).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import os
import socket
import sys

import pjsua2 as pj
from twisted.internet import protocol, reactor, task

from mizu.errors import LegGone, NoCapacity, TelephonyError
from mizu.sip import admission, sipmsg
from mizu.sip import amp as cmd
from mizu.sip.admission import wire_text
from mizu.sip.engine import (
    engine_name,
    files_needed,
    limits_for,
    raise_file_limit,
    worker_calls,
)
from mizu.sip.link import WorkerLink
from mizu.sip.pjcalls import Account, Bouncer, Endpoint, Leg, Player
from mizu.telephony import LOCAL, TIMEOUT, refusal_code

POLL_INTERVAL = 0.01
# One libHandleEvents(0) handles at most 16 ready sockets (pjlib's
# PJ_IOQUEUE_MAX_EVENTS_IN_SINGLE_POLL): each tick drains up to this many rounds, so a
# burst is read at once instead of overflowing the socket buffers into retransmissions.
POLL_ROUNDS = 32
DECISION_TIMEOUT = 30.0  # an incoming call the controller never decided on
RESPONSE_HEADERS = ("via", "from", "to", "call-id", "cseq")


def _library():
    return ctypes.CDLL(pj._pjsua2.__file__)


def call_capacity() -> int:
    """pjsua's real call limit: ``maxCalls`` as pjsua took it, clamped to the
    ``PJSUA_MAX_CALLS`` it was compiled with (4 in the wheel, 1024 built by mizu)."""
    return int(_library().pjsua_call_get_max_count())


def ioqueue_name() -> str:
    """The ioqueue pjlib was built with: ``select`` (the wheel) or ``epoll``."""
    name = _library().pj_ioqueue_name
    name.restype = ctypes.c_char_p
    return name().decode("ascii", "replace")


def pj_errors(method):
    """Report a pjsua2 error from a command as a TelephonyError naming the command."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except pj.Error as e:
            raise TelephonyError(f"{method.__name__} failed: {e.reason}") from None

    return wrapper


class Engine:
    """Owns the pjsua2 Endpoint and every live leg of this worker."""

    def __init__(self, host: str, port: int, public_address: str, max_calls: int,
                 log_level: int = 1):
        self.host, self.port, self.public_address = host, port, public_address
        self.legs: dict[str, Leg] = {}
        self.protocol = None
        self._counter = 0
        # Each call takes two sockets: a file limit too low for the share lowers it.
        self.file_limit = raise_file_limit(max_calls)
        calls = worker_calls(max_calls, self.file_limit)
        if calls < 1:
            raise StartError(f"the open-file limit ({self.file_limit}) leaves no room for a "
                             f"call: raise it to at least {files_needed(max_calls)}")
        self.ep = Endpoint()
        self.ep.libCreate()
        self.refused = 0
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0
        config.uaConfig.mainThreadOnly = True
        config.uaConfig.maxCalls = calls  # pjsua answers 486 itself beyond it
        config.uaConfig.userAgent = "mizu"
        config.medConfig.threadCnt = 1
        config.medConfig.sndAutoCloseTime = -1
        config.medConfig.clockRate = 8000
        config.medConfig.sndClockRate = 8000
        config.medConfig.noVad = True
        config.logConfig.level = log_level
        config.logConfig.consoleLevel = log_level
        self.ep.libInit(config)
        self.ep.audDevManager().setNullDev()
        self.ioqueue = ioqueue_name()
        self.engine = engine_name(getattr(pj, "__version__", ""), self.ep.libVersion().full)
        self.limits = limits = limits_for(self.ioqueue)
        self.incoming_budget = admission.SetupBudget(
            reactor, limits.incoming_rate, limits.incoming_burst)
        self.outgoing_budget = admission.SetupBudget(
            reactor, limits.outgoing_rate, limits.outgoing_burst)
        bound = host if host not in ("0.0.0.0", "") else ""
        transports = []
        for kind, name in ((pj.PJSIP_TRANSPORT_UDP, "UDP"), (pj.PJSIP_TRANSPORT_TCP, "TCP")):
            transport = pj.TransportConfig()
            transport.port = port
            transport.boundAddress = bound
            if public_address:
                transport.publicAddress = public_address
            try:
                transports.append(self.ep.transportCreate(kind, transport))
            except pj.Error as e:
                raise StartError(f"cannot listen on {name} {host}:{port}: {e.reason}") from None
        self.ep.libStart()
        self.capacity = min(call_capacity(), calls)
        # The address others reach us at: pjsua's published name of the UDP transport
        # (the public address, else the bound one, else the host's default interface).
        self.local_name = self.ep.transportGetInfo(transports[0]).localName
        account = pj.AccountConfig()
        account.idUri = f"sip:mizu@{self.local_name}"
        account.mediaConfig.transportConfig.boundAddress = bound
        if public_address:
            account.mediaConfig.transportConfig.publicAddress = public_address
        # SPEC §4: mizu sends no re-INVITE or UPDATE on its own.
        account.mediaConfig.lockCodecEnabled = False
        account.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
        self.account = Account(self)
        self.account.create(account)
        bouncer = pj.AccountConfig()
        bouncer.idUri = f"sip:refused@{self.local_name}"
        bouncer.mediaConfig.useLoopMedTp = True
        bouncer.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
        self.bouncer = Bouncer()
        self.bouncer.create(bouncer)
        self.account.setDefault()
        self.ep.admit = self.admit
        self._poller = task.LoopingCall(self.poll)

    def start(self):
        self._poller.start(POLL_INTERVAL)

    def poll(self):
        """Handle what pjsua has ready, a few rounds while there is more."""
        for _ in range(POLL_ROUNDS):
            if self.ep.libHandleEvents(0) <= 0:
                return

    def next_name(self) -> str:
        self._counter += 1
        return f"w{self.port}-{self._counter}"

    def send(self, command, **kwargs):
        if self.protocol is not None:
            self.protocol.callRemote(command, **kwargs)

    def leg(self, name: str) -> Leg:
        leg = self.legs.get(name)
        if leg is None:
            raise LegGone(f"no live leg {name}")
        return leg

    # -- events from pjsua2 ----------------------------------------------------------

    def admit(self, prm):
        """Send an INVITE that must not reach the media to the bouncer, with its answer."""
        raw = prm.rdata.wholeMsg
        if not raw.startswith("INVITE "):
            return
        refused = admission.refusal(raw)
        if refused is None and not self.incoming_budget.take():
            refused = (503, "Service Unavailable (too many calls at once)")
        if refused is not None:
            self.refused += 1
            self.bouncer.refusals.append(refused)
            prm.accountIndex = self.bouncer.getId()

    def incoming(self, account, prm):
        name = self.next_name()
        leg = Leg(self, name, account, prm.callId)
        self.legs[name] = leg
        try:
            raw = prm.rdata.wholeMsg
            refused = admission.refusal(raw)  # admitted by mistake: still never reported
            if refused is not None:
                reactor.callLater(0, self._hangup, leg, refused[0], refused[1])
                return
            start, headers, _ = sipmsg.split_message(raw)
            leg.timer = reactor.callLater(DECISION_TIMEOUT, self._undecided, name)
            via = sipmsg.header(headers, "via")
            self.send(cmd.Incoming, leg=name, request_uri=sipmsg.request_uri(start),
                      from_uri=sipmsg.header(headers, "from"),
                      to_uri=sipmsg.header(headers, "to"),
                      pai=sipmsg.header(headers, "p-asserted-identity"),
                      authorization=sipmsg.header(headers, "authorization"),
                      call_id=sipmsg.header(headers, "call-id"),
                      source=wire_text(prm.rdata.srcAddress),
                      transport=sipmsg.via_transport(via),
                      response_headers=sipmsg.header_lines(headers, RESPONSE_HEADERS))
        except Exception as e:  # never leave a caller without an answer
            print(f"incoming call {name} refused: {type(e).__name__}: {e}", file=sys.stderr)
            # Not from inside onIncomingCall: pjsua may abort (see pjcalls.Bouncer).
            reactor.callLater(0, self._hangup, leg, 500, "Server Internal Error")

    def _undecided(self, name):
        leg = self.legs.get(name)
        if leg is not None and not leg.answered:
            self._hangup(leg, 500, "no decision", TIMEOUT)

    def leg_state(self, leg: Leg):
        info = leg.getInfo()
        if info.state == pj.PJSIP_INV_STATE_EARLY and info.role == pj.PJSIP_ROLE_UAC:
            self.send(cmd.CallState, leg=leg.name, state="ringing",
                      code=info.lastStatusCode, reason=wire_text(info.lastReason), by="")
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED and not leg.answered:
            leg.answered = True
            self._cancel_timer(leg)
            self.send(cmd.CallState, leg=leg.name, state="answered", code=200, reason="OK",
                      by="")
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._cancel_timer(leg)
            reason = leg.end_reason or info.lastReason
            code = leg.end_code or info.lastStatusCode
            self._stop_player(leg)
            # The engine held the only strong reference; dropping it frees the Call.
            self.legs.pop(leg.name, None)
            self.send(cmd.CallState, leg=leg.name, state="ended", code=code,
                      reason=wire_text(reason), by=leg.end_by)

    # -- commands from the controller -------------------------------------------------

    @pj_errors
    def originate(self, leg, uri, caller, headers, ring_timeout):
        if len(self.legs) >= self.capacity:
            raise NoCapacity(f"all {self.capacity} call slots in use")
        if leg in self.legs:
            raise TelephonyError(f"leg {leg} exists")
        if not self.outgoing_budget.take():
            raise NoCapacity("too many call setups this second; try again")
        call = Leg(self, leg, self.account)
        prm = pj.CallOpParam(True)
        if caller:
            prm.txOption.localUri = f"sip:{caller}@{self.local_name}"
        prm.txOption.headers = self._headers(headers)
        self.legs[leg] = call
        try:
            call.makeCall(uri, prm)
        except pj.Error as e:
            self.legs.pop(leg, None)
            raise TelephonyError(f"cannot call {uri}: {e.reason}") from None
        call.timer = reactor.callLater(ring_timeout, self._ring_timeout, leg)

    def _ring_timeout(self, name):
        leg = self.legs.get(name)
        if leg is not None and not leg.answered:
            leg.timer = None
            self._hangup(leg, 487, "ring timeout", TIMEOUT)

    @staticmethod
    def _cancel_timer(leg):
        if leg.timer is not None and leg.timer.active():
            leg.timer.cancel()
        leg.timer = None

    @staticmethod
    def _headers(lines):
        vector = pj.SipHeaderVector()
        for line in lines:
            name, _, value = line.partition(":")
            h = pj.SipHeader()
            h.hName, h.hValue = name.strip(), value.strip()
            vector.append(h)
        return vector

    @pj_errors
    def answer(self, leg):
        call = self.leg(leg)
        self._cancel_timer(call)
        prm = pj.CallOpParam(True)
        prm.statusCode = 200
        call.answer(prm)

    @pj_errors
    def reject(self, leg, code, reason, headers):
        call = self.leg(leg)
        if call.answered or not 300 <= code <= 699:
            raise TelephonyError(f"cannot reject leg {leg} with {code}")
        self._cancel_timer(call)
        call.end_code, call.end_reason, call.end_by = code, reason, LOCAL
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        if reason:
            prm.reason = reason
        prm.txOption.headers = self._headers(headers)
        call.hangup(prm)

    def _hangup(self, call, code, reason, by=LOCAL):
        """BYE when answered, CANCEL when we dial, else a final response of 300 or more:
        pjsua would answer an incoming call 200 if given that code."""
        self._cancel_timer(call)
        try:
            incoming = call.getInfo().role == pj.PJSIP_ROLE_UAS
        except pj.Error:
            incoming = True  # ending already; the safe answer is a refusal
        if call.answered:
            code = 200
        elif incoming:
            code = refusal_code(code)
        call.end_code, call.end_reason, call.end_by = code, reason, by
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        try:
            call.hangup(prm)
        except pj.Error:
            pass  # already ending

    @pj_errors
    def hangup(self, leg, code):
        self._hangup(self.leg(leg), code or None, "hangup")

    def audio(self, call):
        if not call.media_ready:
            raise TelephonyError(f"leg {call.name} has no active audio")
        return call.getAudioMedia(-1)

    @pj_errors
    def play(self, leg, play_id, paths):
        call = self.leg(leg)
        self.audio(call)
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing or not paths:
            raise TelephonyError(f"cannot play {', '.join(missing) or 'nothing'}: no such file")
        self._stop_player(call)
        call.play_id, call.queue = play_id, list(paths)
        self._play_next(call)

    def _play_next(self, call):
        """Start the next file of the leg's playlist; PlayDone once it is empty."""
        self._stop_player(call)
        if not call.queue:
            self.send(cmd.PlayDone, leg=call.name, play_id=call.play_id)
            return
        path = call.queue.pop(0)
        name = call.name  # the player must not hold the Call: the engine owns it alone
        player = Player(self._eof, name)
        try:
            player.createPlayer(path, pj.PJMEDIA_FILE_NO_LOOP)
            player.startTransmit(self.audio(call))
        except (pj.Error, TelephonyError) as e:
            print(f"leg {name}: cannot play {path}: {getattr(e, 'reason', e)}",
                  file=sys.stderr)
            call.queue.clear()
            self.send(cmd.PlayDone, leg=call.name, play_id=call.play_id)
            return
        call.player = player

    def _eof(self, name, player):
        call = self.legs.get(name)
        if call is None or call.player is not player:
            return  # stopped or ended meanwhile
        self._play_next(call)

    def _stop_player(self, call):
        player, call.player = call.player, None
        if player is not None and call.media_ready:
            try:
                player.stopTransmit(call.getAudioMedia(-1))
            except pj.Error:
                pass

    @pj_errors
    def stop_play(self, leg):
        call = self.leg(leg)
        call.queue.clear()
        self._stop_player(call)

    @pj_errors
    def bridge(self, leg, other):
        a, b = self.audio(self.leg(leg)), self.audio(self.leg(other))
        a.startTransmit(b)
        b.startTransmit(a)

    @pj_errors
    def unbridge(self, leg, other):
        a, b = self.audio(self.leg(leg)), self.audio(self.leg(other))
        a.stopTransmit(b)
        b.stopTransmit(a)

    @pj_errors
    def send_dtmf(self, leg, digits):
        self.leg(leg).dialDtmf(digits)

    @pj_errors
    def stats(self, leg):
        call = self.leg(leg)
        if not call.media_ready:
            return 0, 0
        stat = call.getStreamStat(0)
        return int(stat.rtcp.rxStat.pkt), int(stat.rtcp.txStat.pkt)

    def shutdown(self):
        """Hang up, pump events, drop every reference, then destroy the library."""
        if self._poller.running:
            self._poller.stop()
        self.ep.hangupAllCalls()
        for _ in range(20):
            self.ep.libHandleEvents(10)
        for call in self.legs.values():
            call.player = None
        self.legs.clear()
        self.bouncer.calls.clear()
        self.ep.admit = None
        self.account.shutdown()
        self.bouncer.shutdown()
        self.account = self.bouncer = None
        gc.collect()
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)


class StartError(Exception):
    """The worker cannot start (e.g. its port is taken); the message says why."""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="mizu pjsua2 worker (run by the controller)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--public-address", default="")
    parser.add_argument("--max-calls", type=int, default=4)
    parser.add_argument("--log-level", type=int, default=1, help="pjsua's, 0-6")
    parser.add_argument("--fd", type=int, default=3, help="the AMP socket")
    args = parser.parse_args(argv)
    try:
        engine = Engine(args.host, args.port, args.public_address, args.max_calls,
                        args.log_level)
    except (StartError, pj.Error) as e:
        # The controller shows this last line as the reason the worker did not start.
        print(getattr(e, "reason", None) or str(e), file=sys.stderr, flush=True)
        sys.exit(2)
    factory = protocol.Factory.forProtocol(lambda: WorkerLink(engine, reactor.stop))
    reactor.adoptStreamConnection(args.fd, socket.AF_UNIX, factory)
    os.close(args.fd)  # adopted: the reactor holds its own copy
    engine.start()
    reactor.addSystemEventTrigger("before", "shutdown", engine.shutdown)
    reactor.run()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
