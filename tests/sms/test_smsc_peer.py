"""The test SMSC (tests/sms/smsc.pl on Perl Net::SMPP) speaks SMPP 3.4 to an ESME that is not
mizu's: smpplib, a blocking Python client run in threads so the reactor keeps running."""

import socket

import pytest
import pytest_twisted
import smpplib.client
import smpplib.exceptions
import smpplib.smpp
from twisted.internet import defer, endpoints, reactor, threads

from tests.e2e.peers import RawClient
from tests.sms.smsc import SmscError, gsm_hex, ucs2_hex, udh_parts

ESME_RINVCMDLEN = 0x02
ESME_RALYBND = 0x05
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RTHROTTLED = 0x58


class Esme:
    """smpplib's client; every call that touches the socket runs in a thread."""

    def __init__(self, port: int, timeout: float = 2):
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=timeout,
                                            allow_unknown_opt_params=True)
        self.delivered: list = []
        self.client.set_message_received_handler(lambda pdu: self.delivered.append(pdu))

    def run(self, method: str, *args, **kwargs) -> defer.Deferred:
        return threads.deferToThread(getattr(self.client, method), *args, **kwargs)

    def send_pdu(self, command: str, **fields) -> defer.Deferred:
        pdu = smpplib.smpp.make_pdu(command, client=self.client, **fields)
        return self.run("send_pdu", pdu)

    async def bound(self, system_id: str = "mizu", password: str = "secret") -> "Esme":
        await self.run("connect")
        await self.run("bind_transceiver", system_id=system_id, password=password)
        return self

    def close(self) -> None:
        if self.client._socket is not None:
            self.client.disconnect()


@pytest.fixture
def esmes(smsc):
    """Makes smpplib ESMEs aimed at the SMSC; closes them after the test."""
    made = []

    def make(timeout: float = 2) -> Esme:
        made.append(Esme(smsc.port, timeout))
        return made[-1]

    yield make
    for esme in made:
        esme.close()


def bind_pdu(seq: int, system_id: bytes, password: bytes) -> bytes:
    body = system_id + b"\0" + password + b"\0" + b"\0" + bytes((0x34, 0, 0)) + b"\0"
    return (16 + len(body)).to_bytes(4, "big") + bytes.fromhex("00000009 00000000") \
        + seq.to_bytes(4, "big") + body


@pytest_twisted.ensureDeferred
async def test_binds_with_the_right_credentials_only(smsc, esmes):
    """With accept_binds set, wrong credentials get ESME_RINVPASWD, the right ones bind;
    refuse_binds answers ESME_RBINDFAIL."""
    await smsc.command("accept_binds mizu secret")
    esme = esmes()
    await esme.run("connect")
    assert (await smsc.wait_for("connected"))["peer_port"] > 0
    with pytest.raises(smpplib.exceptions.PDUError) as refused:
        await esme.run("bind_transceiver", system_id="mizu", password="wrong")
    assert refused.value.args[1] == ESME_RINVPASWD
    assert (await smsc.wait_for("bind"))["status"] == ESME_RINVPASWD

    response = await esme.run("bind_transceiver", system_id="mizu", password="secret",
                              system_type="cb")
    assert response.status == 0 and response.system_id == b"smsc"
    bind = await smsc.wait_for("bind", status=0)
    assert (bind["command"], bind["system_id"], bind["password"], bind["system_type"]) == (
        "bind_transceiver", "mizu", "secret", "cb")
    assert bind["interface_version"] == 0x34

    await smsc.command("refuse_binds")
    other = esmes()
    await smsc.command("close")
    await other.run("connect")
    with pytest.raises(smpplib.exceptions.PDUError) as failed:
        await other.run("bind_receiver", system_id="mizu", password="secret")
    assert failed.value.args[1] == ESME_RBINDFAIL
    assert (await smsc.wait_for("bind", command="bind_receiver"))["status"] == ESME_RBINDFAIL


@pytest_twisted.ensureDeferred
async def test_deliver_sm_reaches_the_esme_and_is_acknowledged(smsc, esmes):
    """A deliver_sm from the SMSC arrives with its fields; the ESME's deliver_sm_resp comes
    back as an event with the same seq and status 0; concatenated parts carry their UDH."""
    esme = await esmes().bound()
    seq = await smsc.deliver("4915112345", "100", gsm_hex("CB 4930123@"), seq=42)
    assert seq == 42
    await esme.run("read_once")
    message = esme.delivered[0]
    assert (message.source_addr, message.destination_addr) == (b"4915112345", b"100")
    assert message.short_message == b"CB 4930123\x00"
    assert (await smsc.wait_for("deliver_sm_resp", seq=42))["status"] == 0

    parts = udh_parts("BALANCE please", ref=7, size=8, coding="ucs2")
    for esm_class, short_message_hex in parts:
        await smsc.deliver("4915112345", "100", short_message_hex, esm_class, data_coding=8)
        await esme.run("read_once")
    assert [(m.esm_class, bytes(m.short_message)[:6]) for m in esme.delivered[1:]] == [
        (0x40, bytes((5, 0, 3, 7, 2, 1))), (0x40, bytes((5, 0, 3, 7, 2, 2)))]
    assert b"".join(bytes(m.short_message)[6:] for m in esme.delivered[1:]) \
        == bytes.fromhex(ucs2_hex("BALANCE please"))
    await smsc.wait_for("deliver_sm_resp", status=0)
    await smsc.wait_for("deliver_sm_resp", status=0)


@pytest_twisted.ensureDeferred
async def test_submit_sm_shows_its_text(smsc, esmes):
    """The ESME's submit_sm is reported with addresses, coding and text, and answered with a
    message_id; submit_status makes the SMSC answer with an error instead."""
    esme = await esmes().bound()
    await esme.run("send_message", source_addr="100", destination_addr="4915112345",
                   data_coding=8, short_message=bytes.fromhex(ucs2_hex("Callback accepted")))
    response = await esme.run("read_pdu")
    assert (response.command, response.status, response.message_id) == (
        "submit_sm_resp", 0, b"m1")
    submit = await smsc.wait_for("submit_sm")
    assert (submit["source_addr"], submit["destination_addr"], submit["data_coding"]) == (
        "100", "4915112345", 8)
    assert bytes.fromhex(submit["short_message_hex"]).decode("utf-16-be") == "Callback accepted"
    assert submit["message_id"] == "m1" and submit["tlvs"] == {}

    await smsc.command(f"submit_status {ESME_RTHROTTLED:#x}")
    await esme.run("send_message", source_addr="100", destination_addr="4915112345",
                   short_message=b"Balance: 5.00")
    response = await esme.run("read_pdu")
    assert response.status == ESME_RTHROTTLED
    submit = await smsc.wait_for("submit_sm", status=ESME_RTHROTTLED)
    assert bytes.fromhex(submit["short_message_hex"]) == b"Balance: 5.00"


@pytest_twisted.ensureDeferred
async def test_enquire_link_both_ways_and_silence(smsc, esmes):
    """Each side's enquire_link is answered; in silent mode the SMSC reports the ESME's
    enquire_link but answers nothing."""
    esme = await esmes(timeout=1).bound()
    seq = (await smsc.command("enquire"))["seq"]
    await esme.run("read_once")
    assert (await smsc.wait_for("enquire_link_resp", seq=seq))["status"] == 0

    await esme.send_pdu("enquire_link")
    assert (await esme.run("read_pdu")).command == "enquire_link_resp"
    await smsc.wait_for("enquire_link")

    await smsc.command("silent on")
    await esme.send_pdu("enquire_link")
    with pytest.raises(socket.timeout):
        await esme.run("read_pdu")
    await smsc.wait_for("enquire_link")


@pytest_twisted.ensureDeferred
async def test_the_esme_rebinds_after_either_side_drops(smsc, esmes):
    """After the SMSC closes the link, or the ESME unbinds and leaves, a new connection is
    accepted and binds."""
    first = await esmes().bound()
    await smsc.wait_for("bind", status=0)
    await smsc.command("close")
    assert (await smsc.wait_for("closed"))["by"] == "smsc"
    with pytest.raises(smpplib.exceptions.ConnectionError):
        await first.run("read_pdu")
    with pytest.raises(SmscError):
        await smsc.command("enquire")

    second = await esmes().bound()
    await smsc.wait_for("bind", status=0)
    assert (await second.run("unbind")).command == "unbind_resp"
    await smsc.wait_for("unbind")
    second.close()
    assert (await smsc.wait_for("closed"))["by"] == "esme"

    await esmes().bound(password="any")
    assert (await smsc.wait_for("bind", status=0))["password"] == "any"


@pytest_twisted.ensureDeferred
async def test_partial_and_malformed_pdus(smsc):
    """A PDU that arrives in pieces is decoded once whole, and the SMSC obeys commands in the
    meantime; a second bind is ESME_RALYBND; raw bytes reach the ESME as they are; a
    command_length below 16 is answered with generic_nack ESME_RINVCMDLEN and the link
    dropped."""
    peer = RawClient()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", smsc.port)
    await endpoints.connectProtocol(endpoint, peer)
    await smsc.wait_for("connected")
    pdu = bind_pdu(5, b"mizu", b"pw")
    peer.transport.write(pdu[:10])
    await smsc.command("submit_status 0")
    peer.transport.write(pdu[10:])
    bind = await smsc.wait_for("bind")
    assert (bind["seq"], bind["system_id"], bind["password"]) == (5, "mizu", "pw")
    peer.transport.write(bind_pdu(6, b"mizu", b"pw"))
    assert (await smsc.wait_for("bind", seq=6))["status"] == ESME_RALYBND

    await smsc.command("raw 7fffffff00000005")
    peer.transport.write(bytes.fromhex("00000008 00000015 00000000 00000007"))
    malformed = await smsc.wait_for("malformed")
    assert malformed["reason"] == "command_length 8"
    assert (await smsc.wait_for("closed"))["reason"] == "malformed"
    await peer.closed
    nack = bytes.fromhex("00000010 80000000") + ESME_RINVCMDLEN.to_bytes(4, "big") \
        + (7).to_bytes(4, "big")
    assert peer.received.endswith(bytes.fromhex("7fffffff00000005") + nack)
