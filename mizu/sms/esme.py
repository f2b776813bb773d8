"""The SMPP 3.4 ESME protocol: PDUs in and out, nothing about what a message means.

PDUs are encoded and decoded by ``smpp.pdu``; this module frames them, binds, keeps the
link alive and matches responses to requests. Every ``deliver_sm`` goes to the
``handler``, and its ``deliver_sm_resp`` is sent only when the handler's Deferred fires
with the status to answer (after the request is stored, or with a temporary error so that
the SMSC delivers it again).

Defences: a ``command_length`` under 16 or over ``MAX_PDU`` cannot be framed, so it is
answered ``generic_nack`` (``ESME_RINVCMDLEN``) and the link is dropped (and rebound); a
PDU that frames but does not decode gets a ``generic_nack`` and the link goes on. The SMSC
may have at most ``MAX_INFLIGHT`` messages waiting for their answer; more are answered
``ESME_RTHROTTLED``. A request not answered within ``response_timeout`` seconds (the bind,
an ``enquire_link``) drops the link: a silent SMSC is a lost one.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from smpp.pdu import operations, pdu_types
from smpp.pdu.pdu_encoding import DataCodingEncoder, EsmClassEncoder, PDUEncoder
from twisted.internet import defer, protocol, task
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

MAX_PDU = 70_000  # a deliver_sm with a 64 KiB message_payload, and room for its fields
MAX_INFLIGHT = 100
Status = pdu_types.CommandStatus

BINDS = {"transceiver": operations.BindTransceiver, "receiver": operations.BindReceiver}
_HEADER = struct.Struct(">IIII")
_RESPONSE_BIT = 0x80000000
_GSM_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 "
                      "\n\r.,:;!?'\"()+-/*=%&#<>")


class SmppLinkError(Exception):
    """Why a link ended or a request failed, in words for the console."""


@dataclass(frozen=True)
class InboundSms:
    """A ``deliver_sm`` as the processor sees it: addresses, the raw bits and bytes."""

    source_addr: str
    destination_addr: str
    esm_class: int
    data_coding: int
    short_message: bytes


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


_ESM, _CODING = EsmClassEncoder(), DataCodingEncoder()


def _message(pdu) -> InboundSms:
    params = pdu.params
    body = params.get("short_message") or params.get("message_payload") or b""
    esm = params.get("esm_class")
    coding = params.get("data_coding")
    return InboundSms(
        source_addr=_text(params.get("source_addr")),
        destination_addr=_text(params.get("destination_addr")),
        esm_class=_ESM.encode(esm)[0] if esm is not None else 0,
        data_coding=_CODING.encode(coding)[0] if coding is not None else 0,
        short_message=bytes(body))


_DELIVER_SM_RESP = 0x80000005
_STATUS_CODES = {status: code for code, status in (
    (0x00, Status.ESME_ROK), (0x04, Status.ESME_RINVBNDSTS), (0x58, Status.ESME_RTHROTTLED),
    (0x64, Status.ESME_RX_T_APPN))}


def deliver_sm_resp(seq: int, status) -> bytes:
    """The answer to a deliver_sm, packed directly (it is sent for every message):
    the header and an empty message_id."""
    code = _STATUS_CODES.get(status)
    if code is None:
        return PDUEncoder().encode(operations.DeliverSMResp(seqNum=seq, status=status))
    return _HEADER.pack(17, _DELIVER_SM_RESP, code, seq) + b"\0"


def encode_reply(text: str) -> tuple[bytes, int]:
    """(short_message, data_coding) for a reply: plain GSM when every character is one
    that GSM 03.38 and ASCII share, else UCS-2; cut to one message (160 or 70 chars)."""
    if all(c in _GSM_SAFE for c in text):
        return text[:160].encode("ascii"), 0
    return text[:70].encode("utf-16-be"), 8


class Esme(protocol.Protocol):
    """One connection to the SMSC. ``factory`` holds the settings, handler, link and clock.

    ``factory.link`` is told ``binding()``, ``bound(esme)`` and ``down(reason)``.
    """

    def __init__(self):
        self._buffer = bytearray()
        self._codec = PDUEncoder()
        self._seq = 0
        self._pending: dict[int, tuple[defer.Deferred, object]] = {}
        self._inflight = 0
        self._keepalive: task.LoopingCall | None = None
        self._reason: str | None = None
        self._abort = None
        self._closed: defer.Deferred | None = None
        self._ready = defer.Deferred()
        self.bound = False

    # -- the link -------------------------------------------------------------------------
    def connectionMade(self):
        f = self.factory
        self._config = f.config
        f.link.binding()
        bind = BINDS[self._config.bind](
            seqNum=self._next_seq(), system_id=self._config.system_id,
            password=self._config.password, system_type=self._config.system_type or None,
            interface_version=0x34)
        self._request(bind).addCallbacks(self._bound, self._bind_failed)

    def _bound(self, response):
        self.bound = True
        log.info("SMPP: bound as {bind} to the SMSC {peer}", bind=self._config.bind,
                 peer=self._peer())
        self._keepalive = task.LoopingCall(self._enquire)
        self._keepalive.clock = self.factory.clock
        self._keepalive.start(self._config.enquire_interval, now=False)
        self.factory.link.bound(self)
        self._ready.callback(self)

    def whenBound(self) -> defer.Deferred:
        """Fires with self once bound; fails if the link ends first (the bind refused, no
        answer): ``ClientService`` then counts the attempt as failed and backs off."""
        return self._ready

    def _bind_failed(self, failure):
        self._drop(f"bind refused: {failure.getErrorMessage()}")

    def _enquire(self):
        self._request(operations.EnquireLink(seqNum=self._next_seq())).addErrback(
            lambda f: self._drop(f"enquire_link: {f.getErrorMessage()}"))

    def _drop(self, reason: str):
        """End the link for ``reason`` (logged, shown by ``status``)."""
        if self._reason is None:
            self._reason = reason
            log.warn("SMPP: {reason}; dropping the link", reason=reason)
        if self.connected and self._abort is None:
            self.transport.loseConnection()
            self._abort = self.factory.clock.callLater(self._config.response_timeout,
                                                       self.transport.abortConnection)

    def connectionLost(self, reason=protocol.connectionDone):
        self.bound = False
        self.connected = 0
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        pending, self._pending = self._pending, {}
        why = self._reason or f"connection lost: {reason.getErrorMessage()}"
        for d, timer in pending.values():
            if timer.active():
                timer.cancel()
            d.errback(SmppLinkError(why))
        self.factory.link.down(why)
        if not self._ready.called:
            self._ready.errback(SmppLinkError(why))
        if self._closed is not None:
            self._closed.callback(None)

    def _peer(self) -> str:
        peer = self.transport.getPeer()
        return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"

    # -- requests we send -----------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def _send(self, pdu) -> None:
        self.transport.write(self._codec.encode(pdu))

    def _request(self, pdu) -> defer.Deferred:
        """Send ``pdu``; fires with its response, fails on an error status or timeout."""
        d = defer.Deferred()
        timer = self.factory.clock.callLater(self._config.response_timeout, self._timed_out,
                                             pdu.seqNum, pdu.commandId.name)
        self._pending[pdu.seqNum] = (d, timer)
        self._send(pdu)
        return d

    def _timed_out(self, seq: int, name: str):
        entry = self._pending.pop(seq, None)
        if entry is not None:
            entry[0].errback(SmppLinkError(f"no answer to {name} within "
                                           f"{self._config.response_timeout} s"))

    def submit(self, destination: str, text: str) -> defer.Deferred:
        """Send a text to ``destination`` (a reply); fires with the SMSC's message id."""
        if not self.bound or self._config.bind != "transceiver":
            return defer.fail(SmppLinkError("not bound as a transceiver"))
        body, coding = encode_reply(text)
        pdu = operations.SubmitSM(
            seqNum=self._next_seq(), source_addr=self._config.source_addr or None,
            destination_addr=destination, short_message=body,
            data_coding=pdu_types.DataCoding(
                pdu_types.DataCodingScheme.DEFAULT,
                pdu_types.DataCodingDefault.UCS2 if coding == 8
                else pdu_types.DataCodingDefault.SMSC_DEFAULT_ALPHABET),
            registered_delivery=pdu_types.RegisteredDelivery(
                pdu_types.RegisteredDeliveryReceipt.NO_SMSC_DELIVERY_RECEIPT_REQUESTED))
        return self._request(pdu).addCallback(lambda r: _text(r.params.get("message_id")))

    def unbind(self) -> defer.Deferred:
        """Unbind and close; fires when the connection is gone (at most two timeouts)."""
        if not self.connected:
            return defer.succeed(None)
        self._reason = self._reason or "unbound: mizu is stopping"
        closed = self._closed = defer.Deferred()
        if not self.bound:
            self._drop(self._reason)
        else:
            self._request(operations.Unbind(seqNum=self._next_seq())).addBoth(
                lambda _: self._drop(self._reason))
        return closed

    # -- what arrives ---------------------------------------------------------------------
    def dataReceived(self, data: bytes):
        self._buffer += data
        while len(self._buffer) >= 4:
            (length,) = struct.unpack_from(">I", self._buffer)
            if length < 16 or length > MAX_PDU:
                seq = (struct.unpack_from(">I", self._buffer, 12)[0]
                       if len(self._buffer) >= 16 else 0)
                self._nack(seq, Status.ESME_RINVCMDLEN)
                self._buffer.clear()
                self._drop(f"the SMSC sent a PDU of length {length}")
                return
            if len(self._buffer) < length:
                return
            frame = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._frame(frame)

    def _nack(self, seq: int, status) -> None:
        self._send(operations.GenericNack(seqNum=seq or 1, status=status))

    def _frame(self, frame: bytes):
        _, command, _, seq = _HEADER.unpack_from(frame)
        try:
            pdu = self._codec.decode(io.BytesIO(frame))
        except Exception as e:  # smpp.pdu raises several types for bad bytes
            log.warn("SMPP: undecodable PDU 0x{command:08x} seq {seq}: {e}", command=command,
                     seq=seq, e=e)
            if not command & _RESPONSE_BIT:
                self._nack(seq, getattr(e, "status", Status.ESME_RINVCMDID))
            return
        name = pdu.commandId.name
        if command & _RESPONSE_BIT:
            self._response(pdu, name)
        elif name == "enquire_link":
            self._send(pdu.requireAck(seqNum=pdu.seqNum))
        elif name == "deliver_sm":
            self._deliver(pdu)
        elif name == "unbind":
            self._send(pdu.requireAck(seqNum=pdu.seqNum))
            self._drop("the SMSC unbound")
        else:
            self._nack(seq, Status.ESME_RINVCMDID)

    def _response(self, pdu, name: str):
        entry = self._pending.pop(pdu.seqNum, None)
        if entry is None:
            log.info("SMPP: an unexpected {name} (seq {seq})", name=name, seq=pdu.seqNum)
            return
        d, timer = entry
        if timer.active():
            timer.cancel()
        if pdu.status != Status.ESME_ROK or name == "generic_nack":
            d.errback(SmppLinkError(f"{name} {pdu.status.name}"))
        else:
            d.callback(pdu)

    def _deliver(self, pdu):
        if not self.bound:
            self.transport.write(deliver_sm_resp(pdu.seqNum, Status.ESME_RINVBNDSTS))
            return
        if self._inflight >= MAX_INFLIGHT:
            self.transport.write(deliver_sm_resp(pdu.seqNum, Status.ESME_RTHROTTLED))
            return
        self._inflight += 1
        d = defer.maybeDeferred(self.factory.handler.deliver, _message(pdu))
        d.addErrback(self._handler_failed)
        d.addCallback(self._answer, pdu)

    @staticmethod
    def _handler_failed(failure: Failure):
        log.failure("SMPP: a deliver_sm could not be handled", failure)
        return Status.ESME_RX_T_APPN  # temporary: the SMSC delivers it again

    def _answer(self, status, pdu):
        self._inflight -= 1
        if not self.connected:
            return  # the link is gone: the SMSC will deliver it again
        self.transport.write(deliver_sm_resp(pdu.seqNum, status))


class EsmeFactory(protocol.Factory):
    """Builds ``Esme`` connections for ``ClientService``; the settings are read at each
    connection, so a reload takes effect at the next bind."""

    protocol = Esme

    def __init__(self, config, handler, link, clock):
        self.config = config
        self.handler = handler
        self.link = link
        self.clock = clock
