"""The pjsua2 objects of a worker: calls, accounts, the endpoint, the prompt player.

Their callbacks run in the worker's reactor thread (``libHandleEvents``), except
``Player.onEof2``, which runs on pjsua's clock thread and only hops to the reactor.
The ``Engine`` (``mizu.sip.worker``) owns them all.
"""

from __future__ import annotations

import sys

import pjsua2 as pj
from twisted.internet import reactor

from mizu.sip import amp as cmd
from mizu.sip import sipmsg
from mizu.telephony import REMOTE


class Player(pj.AudioMediaPlayer):
    """A WAV player whose end-of-file is reported on the reactor thread as
    ``on_eof(name, player)``.

    The player must not refer to itself (a lambda closing over it would): only the cyclic
    garbage collector frees such a cycle, and pjsua has 32 player slots in the wheel, so
    under load the prompts stopped playing (PJ_ETOOMANY) long before it ran.
    """

    def __init__(self, on_eof, name):
        super().__init__()
        self._on_eof, self._name = on_eof, name

    def onEof2(self):  # pjsua's clock thread: nothing but a hop to the reactor
        reactor.callFromThread(self._on_eof, self._name, self)


class Leg(pj.Call):
    """One call; its callbacks run in the reactor thread (libHandleEvents)."""

    def __init__(self, engine, name, account, call_id=pj.PJSUA_INVALID_ID):
        super().__init__(account, call_id)
        self.engine = engine
        self.name = name
        self.player = None
        self.play_id = 0
        self.queue: list[str] = []
        self.media_ready = False
        self.answered = False
        self.timer = None
        self.end_code = self.end_reason = None
        self.end_by = REMOTE

    def onCallState(self, prm):
        self.engine.leg_state(self)

    def onCallMediaState(self, prm):
        info = self.getInfo()
        self.media_ready = any(
            m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE
            for m in info.media
        )

    def onDtmfDigit(self, prm):
        method = "rfc2833" if prm.method == 0 else "info-relay"
        self.engine.send(cmd.Dtmf, leg=self.name, digit=prm.digit, method=method)

    def onCallTsxState(self, prm):
        # pjsua answers INFO application/dtmf with 500 itself; the digit is read here.
        event = prm.e
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        state = event.body.tsxState
        if state.type != pj.PJSIP_EVENT_RX_MSG or state.tsx.role != pj.PJSIP_ROLE_UAS:
            return
        if state.tsx.method != "INFO":
            return
        _, headers, body = sipmsg.split_message(state.src.rdata.wholeMsg)
        content_type = sipmsg.header(headers, "content-type")
        if content_type.split(";")[0].strip().lower() == "application/dtmf":
            digit = sipmsg.info_digit(content_type, body)
            if digit:
                self.engine.send(cmd.Dtmf, leg=self.name, digit=digit, method="info-dtmf")


class Account(pj.Account):
    """The worker's account: every admitted incoming INVITE arrives here."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def onIncomingCall(self, prm):
        self.engine.incoming(self, prm)


class Bounced(pj.Call):
    """A refused INVITE, held only until pjsua has sent the refusal."""

    def __init__(self, bouncer, call_id):
        super().__init__(bouncer, call_id)
        self.bouncer = bouncer

    def onCallState(self, prm):
        if self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.bouncer.calls.discard(self)


class Bouncer(pj.Account):
    """Refuses the INVITEs admission turned away. Its media is pjsua's loop transport,
    which has no sockets, so a flood of refusals costs none of the 64 handles."""

    def __init__(self):
        super().__init__()
        self.calls: set[Bounced] = set()
        self.refusals: list[tuple[int, str]] = []  # decided in onSelectAccount, in order

    def onIncomingCall(self, prm):
        code, reason = self.refusals.pop(0) if self.refusals else (503, "Service Unavailable")
        call = Bounced(self, prm.callId)
        self.calls.add(call)
        # Never hang up inside onIncomingCall: for an INVITE without an offer pjsua then
        # frees the request twice and aborts (sip_transport.c: rx_data_free_cloned).
        reactor.callLater(0, self._refuse, call, code, reason)

    def _refuse(self, call, code, reason):
        op = pj.CallOpParam(True)
        op.statusCode, op.reason = code, reason
        if code == 503:
            header = pj.SipHeader()
            header.hName, header.hValue = "Retry-After", "1"
            op.txOption.headers.append(header)
        try:
            call.hangup(op)
        except pj.Error:
            self.calls.discard(call)


class Endpoint(pj.Endpoint):
    """pjsua's endpoint with admission: ``onSelectAccount`` runs before any media exists."""

    def __init__(self):
        super().__init__()
        self.admit = None  # set by the Engine: rdata -> True to let the INVITE in

    def onSelectAccount(self, prm):
        try:
            if self.admit is not None:
                self.admit(prm)
        except Exception as e:  # a callback from C must never raise
            print(f"admission failed: {type(e).__name__}: {e}", file=sys.stderr)
