"""The SMPP link against a rude SMSC, the real Perl Net::SMPP one (tests/sms/smsc.pl)
writing raw bytes: random command ids, wrong command_length values, a deliver_sm before
the bind is answered. mizu answers as SMPP 3.4 says (generic_nack ESME_RINVCMDID 0x03 to
an unknown request, ESME_RINVCMDLEN 0x02 to a length that cannot frame a PDU, then it
drops the link and binds again; ESME_RINVBNDSTS 0x04 to a deliver_sm while not bound),
stores nothing and goes on."""

from __future__ import annotations

import random
import struct

import pytest_twisted
from smpp.pdu import operations
from smpp.pdu.pdu_encoding import PDUEncoder

from tests.e2e.peers import wait_until
from tests.sms.test_smpp_e2e import mizu, rows, smpp_lines, start, text  # noqa: F401

SEED = 20260502
# Requests an SMSC may send that mizu serves; any other request id is unknown to it.
SERVED = {0x05, 0x06, 0x15}


def header(length: int, command: int, seq: int, status: int = 0) -> str:
    return struct.pack(">IIII", length, command, status, seq).hex()


def deliver_sm(seq: int, body: str = "CB 4420111") -> bytes:
    return PDUEncoder().encode(operations.DeliverSM(
        seqNum=seq, source_addr="4917011", destination_addr="4000",
        short_message=body.encode()))


async def rebound(smsc, root):
    await smsc.wait_for("closed")
    await smsc.wait_for("bind", status=0, timeout=30)
    await wait_until(lambda: smpp_lines(root)[0].startswith("smpp bound"), what="rebound")


@pytest_twisted.ensureDeferred
async def test_random_command_ids(mizu, smsc, sql):  # noqa: F811
    """30 requests with random unknown command ids get generic_nack ESME_RINVCMDID with
    their sequence number; responses nobody asked for get no answer; the link stays up."""
    rng = random.Random(SEED)
    sent = []
    while len(sent) < 30:
        command = rng.randrange(0, 0x80000000)
        if command in SERVED:
            continue
        seq = 0x1000 + len(sent)
        await smsc.command("raw " + header(16, command, seq))
        sent.append(seq)
    for seq in sent:
        nack = await smsc.wait_for("generic_nack", seq=seq)
        assert nack["status"] == 0x03
    for i in range(10):  # unsolicited responses, some with an error status
        await smsc.command("raw " + header(16, 0x80000000 | rng.randrange(1, 0x300),
                                           0x2000 + i, rng.choice((0, 3, 0x45))))
    assert (await text(smsc, "CB"))["status"] == 0  # the link goes on
    assert not [e for e in smsc.events if e["event"] == "generic_nack"
                and e["seq"] >= 0x2000]
    assert not [e for e in smsc.events if e["event"] == "closed"]
    assert len(rows(sql)) == 1 and smpp_lines(mizu)[0].startswith("smpp bound")


@pytest_twisted.ensureDeferred
async def test_wrong_command_lengths(mizu, smsc, sql):  # noqa: F811
    """command_length 0 and 15 cannot frame a PDU: generic_nack ESME_RINVCMDLEN, the link
    is dropped and bound again; a length smaller than the body it carries (16 for a whole
    deliver_sm) gets a generic_nack ESME_RINVMSGLEN, the body's bytes are never taken for
    a message, and the stream, out of step now, is dropped and bound again."""
    for seq, length in ((0x31, 0), (0x32, 15)):
        await smsc.command("raw " + header(length, 0x05, seq) + "00" * 8)
        nack = await smsc.wait_for("generic_nack", seq=seq)
        assert nack["status"] == 0x02
        await rebound(smsc, mizu)
    pdu = bytearray(deliver_sm(0x33))
    pdu[0:4] = struct.pack(">I", 16)
    await smsc.command("raw " + pdu.hex())
    nack = await smsc.wait_for("generic_nack", seq=0x33)
    assert nack["status"] == 0x01
    await smsc.command("enquire")  # its answer is lost in the misframed stream, ...
    await rebound(smsc, mizu)  # ... so mizu's own enquire_link times out: a new bind
    assert rows(sql) == []
    assert not [e for e in smsc.events if e["event"] == "deliver_sm_resp"]
    assert (await text(smsc, "BALANCE"))["status"] == 0


@pytest_twisted.ensureDeferred
async def test_deliver_sm_before_the_bind_is_answered(tmp_path, database, sql, smsc):
    """A silent SMSC sends a deliver_sm before answering the bind: ESME_RINVBNDSTS and
    nothing stored; the unanswered bind times out and mizu binds again."""
    await smsc.command("silent on")
    root = await start(tmp_path, database, sql, smsc)
    try:
        await smsc.wait_for("bind")
        await smsc.command("raw " + deliver_sm(0x41).hex())
        resp = await smsc.wait_for("deliver_sm_resp", seq=0x41)
        assert resp["status"] == 0x04
        await smsc.command("silent off")
        await smsc.wait_for("closed", timeout=20)  # response_timeout = 2 s
        await smsc.wait_for("bind", status=0, timeout=30)
        await wait_until(lambda: smpp_lines(root)[0].startswith("smpp bound"), what="bound")
        assert rows(sql) == []
        assert (await text(smsc, "CB 4420111"))["status"] == 0
        assert len(rows(sql)) == 1
    finally:
        await root.stopService()
