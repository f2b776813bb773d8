"""The ESME protocol with a StringTransport and a Clock: binding, keep-alive, deliveries
answered only when the handler is done, and what happens to bytes that are not SMPP."""

import io
import struct

import pytest
from smpp.pdu import operations, pdu_types
from smpp.pdu.pdu_encoding import PDUEncoder
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from mizu.config import SmppConfig
from mizu.sms.esme import MAX_INFLIGHT, EsmeFactory, InboundSms, encode_reply

Status = pdu_types.CommandStatus
codec = PDUEncoder()


class Link:
    def __init__(self):
        self.events = []
        self.esme = None

    def binding(self):
        self.events.append("binding")

    def bound(self, esme):
        self.esme = esme
        self.events.append("bound")

    def down(self, reason):
        self.events.append(("down", reason))


class Handler:
    def __init__(self):
        self.messages = []

    def deliver(self, message):
        d = defer.Deferred()
        self.messages.append((message, d))
        return d


class Smsc:
    """The SMSC side of one connection: the PDUs the ESME wrote, and a way to answer."""

    def __init__(self, bind="transceiver"):
        self.clock = task.Clock()
        self.link, self.handler = Link(), Handler()
        config = SmppConfig(enabled=True, host="127.0.0.1", system_id="mizu", password="pw",
                            bind=bind, source_addr="4000")
        factory = EsmeFactory(config, self.handler, self.link, self.clock)
        self.esme = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.esme.makeConnection(self.transport)

    def sent(self):
        data, out = self.transport.value(), []
        self.transport.clear()
        stream = io.BytesIO(data)
        while stream.tell() < len(data):
            out.append(codec.decode(stream))
        return out

    def send(self, pdu):
        self.esme.dataReceived(codec.encode(pdu))

    def bind(self):
        (bind,) = self.sent()
        self.send(bind.requireAck(seqNum=bind.seqNum, system_id="smsc"))
        return bind


def deliver(seq, text=b"CB", source="4917011", esm=None):
    return operations.DeliverSM(
        seqNum=seq, source_addr=source, destination_addr="4000", short_message=text,
        esm_class=esm or pdu_types.EsmClass(pdu_types.EsmClassMode.DEFAULT,
                                            pdu_types.EsmClassType.DEFAULT),
        data_coding=pdu_types.DataCoding())


def test_binds_with_the_configured_account():
    smsc = Smsc()
    bind = smsc.bind()
    assert bind.commandId.name == "bind_transceiver"
    assert (bind.params["system_id"], bind.params["password"]) == (b"mizu", b"pw")
    assert smsc.link.events == ["binding", "bound"] and smsc.esme.bound


def test_receiver_bind():
    smsc = Smsc(bind="receiver")
    assert smsc.bind().commandId.name == "bind_receiver"


def test_a_refused_bind_drops_the_link():
    smsc = Smsc()
    (bind,) = smsc.sent()
    smsc.send(bind.requireAck(seqNum=bind.seqNum, status=Status.ESME_RINVPASWD))
    assert smsc.transport.disconnecting
    smsc.esme.connectionLost(None)
    assert smsc.link.events[-1] == ("down", "bind refused: bind_transceiver_resp "
                                            "ESME_RINVPASWD")


def test_an_unanswered_bind_times_out():
    smsc = Smsc()
    smsc.clock.advance(10)
    assert smsc.transport.disconnecting


def test_enquire_link_both_ways_and_a_silent_smsc():
    smsc = Smsc()
    smsc.bind()
    smsc.send(operations.EnquireLink(seqNum=77))
    (resp,) = smsc.sent()
    assert (resp.commandId.name, resp.seqNum) == ("enquire_link_resp", 77)
    smsc.clock.advance(30)
    (enquire,) = smsc.sent()
    assert enquire.commandId.name == "enquire_link"
    smsc.send(enquire.requireAck(seqNum=enquire.seqNum))
    smsc.clock.advance(10)
    assert not smsc.transport.disconnecting
    smsc.clock.advance(20)
    smsc.sent()
    smsc.clock.advance(10)  # no answer this time
    assert smsc.transport.disconnecting


def test_deliver_sm_is_answered_when_the_handler_is_done():
    smsc = Smsc()
    smsc.bind()
    smsc.send(deliver(5, b"CB 4420111"))
    assert smsc.sent() == []  # not before the request is stored
    message, done = smsc.handler.messages[0]
    assert message == InboundSms("4917011", "4000", 0, 0, b"CB 4420111")
    done.callback(Status.ESME_ROK)
    (resp,) = smsc.sent()
    assert (resp.commandId.name, resp.seqNum, resp.status) == ("deliver_sm_resp", 5,
                                                               Status.ESME_ROK)


def test_a_failing_handler_answers_a_temporary_error():
    smsc = Smsc()
    smsc.bind()
    smsc.send(deliver(6))
    smsc.handler.messages[0][1].errback(RuntimeError("database down"))
    (resp,) = smsc.sent()
    assert resp.status == Status.ESME_RX_T_APPN


def test_deliveries_beyond_the_window_are_throttled():
    smsc = Smsc()
    smsc.bind()
    for seq in range(1, MAX_INFLIGHT + 2):
        smsc.send(deliver(seq))
    (resp,) = smsc.sent()
    assert (resp.seqNum, resp.status) == (MAX_INFLIGHT + 1, Status.ESME_RTHROTTLED)


def test_deliver_before_the_bind_is_refused():
    smsc = Smsc()
    smsc.sent()
    smsc.send(deliver(3))
    (resp,) = smsc.sent()
    assert resp.status == Status.ESME_RINVBNDSTS and not smsc.handler.messages


@pytest.mark.parametrize("length", [0, 15, 70_001, 0xFFFFFFFF])
def test_an_unframeable_length_is_nacked_and_drops_the_link(length):
    smsc = Smsc()
    smsc.bind()
    smsc.esme.dataReceived(struct.pack(">IIII", length, 4, 0, 9))
    (nack,) = smsc.sent()
    assert (nack.commandId.name, nack.status) == ("generic_nack", Status.ESME_RINVCMDLEN)
    assert smsc.transport.disconnecting


def test_undecodable_pdus_are_nacked_and_the_link_goes_on():
    smsc = Smsc()
    smsc.bind()
    smsc.esme.dataReceived(struct.pack(">IIII", 16, 0x00000077, 0, 9))  # unknown command
    smsc.esme.dataReceived(struct.pack(">IIII", 20, 5, 0, 10) + b"\xff\xff\xff\xff")
    nacks = smsc.sent()
    assert [(n.commandId.name, n.seqNum) for n in nacks] == [("generic_nack", 9),
                                                             ("generic_nack", 10)]
    assert not smsc.transport.disconnecting
    smsc.send(deliver(11))
    assert len(smsc.handler.messages) == 1


def test_pdus_split_and_joined_across_reads():
    smsc = Smsc()
    smsc.bind()
    data = codec.encode(deliver(1)) + codec.encode(deliver(2))
    for i in range(0, len(data), 7):
        smsc.esme.dataReceived(data[i:i + 7])
    assert len(smsc.handler.messages) == 2


def test_submit_a_reply_and_unbind():
    smsc = Smsc()
    smsc.bind()
    sent = smsc.esme.submit("4917011", "Callback 17 accepted")
    (submit,) = smsc.sent()
    assert submit.params["short_message"] == b"Callback 17 accepted"
    assert submit.params["destination_addr"] == b"4917011"
    assert submit.params["source_addr"] == b"4000"
    smsc.send(submit.requireAck(seqNum=submit.seqNum, message_id="m1"))
    assert sent.result == "m1"
    closed = smsc.esme.unbind()
    (unbind,) = smsc.sent()
    assert unbind.commandId.name == "unbind"
    smsc.send(unbind.requireAck(seqNum=unbind.seqNum))
    assert smsc.transport.disconnecting
    smsc.esme.connectionLost(None)
    assert closed.called


def test_the_smsc_unbinding():
    smsc = Smsc()
    smsc.bind()
    smsc.send(operations.Unbind(seqNum=40))
    (resp,) = smsc.sent()
    assert resp.commandId.name == "unbind_resp" and smsc.transport.disconnecting


def test_reply_encoding():
    assert encode_reply("Balance: 5.00") == (b"Balance: 5.00", 0)
    assert encode_reply("Guthaben: 5,00 €") == ("Guthaben: 5,00 €".encode("utf-16-be"), 8)
    assert encode_reply("under_score")[1] == 8  # _ is not where ASCII has it in GSM
    assert len(encode_reply("x" * 200)[0]) == 160


def test_deliver_sm_resp_packed_directly_is_what_the_codec_makes():
    from mizu.sms.esme import deliver_sm_resp
    for status in (Status.ESME_ROK, Status.ESME_RINVBNDSTS, Status.ESME_RTHROTTLED,
                   Status.ESME_RX_T_APPN, Status.ESME_RSYSERR):
        made = codec.encode(operations.DeliverSMResp(seqNum=77, status=status))
        assert deliver_sm_resp(77, status) == made, status
