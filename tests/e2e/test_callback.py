"""The callback core end to end (issue 7): a running mizu with a real pjsua2 worker and a
real PostgreSQL, its callers, A-legs and B-legs played by SIPp, the media by test sockets.

Prompts are short tones (``short_prompts``) so that a whole callback takes a few seconds;
the PIN and destination prompts are longer, so digits arrive while they play (barge-in).
"""

from __future__ import annotations

import math
import re
import struct
import wave
from decimal import Decimal
from pathlib import Path

import pytest_twisted
import treq
from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher, textFileLogObserver

from mizu.dispatch.inbound import Inbound
from mizu.dispatch.request import CallbackRequest
from mizu.ivr.prompts import PACKAGED
from tests.e2e.peers import (
    RtpPeer,
    free_port,
    listening,
    sip_header,
    sip_messages,
    sipp,
    wait_until,
)
from tests.e2e.test_sip import boot, finished
from tests.sms.smsc import Smsc, gsm_hex

A_NUMBER, B_NUMBER = "4917011", "4420111"
A_PRICE, B_PRICE = Decimal("0.06"), Decimal("0.60")  # per minute, billed by the second
LONG_PROMPTS = {"enter-pin": 1.5, "enter-destination": 1.5}


def short_prompts(folder: Path, seconds: float = 0.3) -> Path:
    """A sounds folder overriding every packaged prompt with a loud 500 Hz tone of
    ``seconds`` (``LONG_PROMPTS`` longer), 8 kHz mono 16-bit as pjsua plays it."""
    (folder / "en").mkdir(parents=True)
    for name in sorted(p.stem for p in (Path(PACKAGED) / "en").glob("*.wav")):
        frames = int(8000 * LONG_PROMPTS.get(name, seconds))
        with wave.open(str(folder / "en" / f"{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"".join(struct.pack("<h", 8000 if i % 16 < 8 else -8000)
                                   for i in range(frames)))
    return folder


class Rig:
    """A running mizu with the callback core attached, and what the tests look at."""

    def __init__(self, root, sql, tmp_path):
        self.root, self.sql, self.tmp_path = root, sql, tmp_path
        self.dispatcher = root.getServiceNamed("dispatcher")
        self.port_a, self.port_b = free_port(), free_port()
        self.traces = 0
        self.media: list[RtpPeer] = []
        self.worker_pid = root.sip.workers[0].pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.root.sip_port}"

    def peer(self, scenario, *args, port=None, rtp=False, target=None):
        """Start SIPp with ``scenario`` tracing its messages; returns (sipp, trace, rtp):
        ``rtp`` (asked for) is the test socket its SDP names as media."""
        self.traces += 1
        trace = self.tmp_path / f"sipp-{self.traces}-{scenario}.log"
        media = None
        if rtp:
            media, media_port = RtpPeer.listen()
            self.media.append(media)
            args = ("-key", "rtpport", str(media_port), *args)
        proc = sipp(scenario, "-trace_msg", "-message_file", str(trace), *args, port=port,
                    target=target)
        return proc, trace, media

    async def uas(self, scenario, *args, port, rtp=True):
        """A SIPp UAS on ``port`` (a route's gateway), once it is listening."""
        peer = self.peer(scenario, *args, port=port, rtp=rtp)
        await listening(port)
        return peer

    def callback(self, cbid):
        return self.sql("SELECT status, reason, source, userid, attempts FROM tb_callbacks"
                        " WHERE id = %s", (cbid,))[0]

    def status(self, cbid) -> str:
        return self.callback(cbid)[0]

    def credit(self, name="alice") -> Decimal:
        return self.sql("SELECT credit FROM tb_user WHERE username = %s", (name,))[0][0]

    def user_id(self, name="alice") -> int:
        return self.sql("SELECT id FROM tb_user WHERE username = %s", (name,))[0][0]

    def cdrs(self, where="TRUE", args=()):
        """CDRs as dicts, oldest first."""
        columns = ("leg", "caller", "callee", "callbackid", "userid", "accessnumber",
                   "duration", "billedduration", "cost", "result", "answertime", "endtime")
        select = ", ".join(f"extract(epoch FROM {c})::float8" if c.endswith("time") else c
                           for c in columns)
        rows = self.sql(f"SELECT {select} FROM tb_cdrs WHERE {where} ORDER BY id", args)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def legs(self, where="TRUE", args=()) -> dict:
        """The CDRs by leg ('in', 'A', 'B'); each leg at most once."""
        rows = self.cdrs(where, args)
        legs = {row["leg"]: row for row in rows}
        assert len(legs) == len(rows), rows
        return legs

    async def worker_lived(self):
        """The SIP worker that served the test is still the one that started (a failed
        command must not take the worker, and every call on it, down)."""
        await task.deferLater(reactor, 0.3, lambda: None)
        worker = self.root.sip.workers[0]
        assert worker.pid == self.worker_pid and worker.alive, (worker.pid, self.worker_pid)

    def reservations(self) -> int:
        return self.sql("SELECT count(*) FROM tb_reservations")[0][0]


def invite(trace) -> str:
    """The INVITE a SIPp peer received (UAS) or sent (UAC)."""
    found = [m for _, m in sip_messages(trace) if m.startswith("INVITE ")]
    assert found, sip_messages(trace)
    return found[0]


def telephone_event(message: str) -> int:
    """The payload type an SDP offer gives telephone-event/8000."""
    found = re.search(r"a=rtpmap:(\d+) telephone-event/8000", message)
    assert found, message
    return int(found.group(1))


def user_of(header_or_uri: str) -> str:
    """The user part of a SIP URI or name-addr."""
    return header_or_uri.split("sip:", 1)[1].split("@", 1)[0]


def received(trace, start: str) -> list[str]:
    """The messages a SIPp peer received that start with ``start``."""
    return [m for kind, m in sip_messages(trace) if kind == "received" and m.startswith(start)]


def billed(cdr, price: Decimal) -> None:
    """The leg was answered and billed by the second at ``price`` per minute."""
    talk = cdr["endtime"] - cdr["answertime"]  # as stored: to the microsecond
    assert max(1, math.ceil(talk - 1e-3)) <= cdr["billedduration"] <= max(
        1, math.ceil(talk + 1e-3)), cdr
    assert cdr["cost"] == price * cdr["billedduration"] / 60, cdr


@pytest_twisted.async_yield_fixture
async def rig(tmp_path, database, sql):
    """mizu with one worker and the callback core; alice (PIN 1234, credit 10) owns A-number
    4917011; a traffic sender on 127.0.0.1; rates and routes for 4917 (A) and 4420 (B)."""
    log = open(tmp_path / "mizu.log", "w")  # mizu's log, for a failing test; closed below
    observer = textFileLogObserver(log)
    globalLogPublisher.addObserver(observer)
    sounds = short_prompts(tmp_path / "sounds")
    extra = (f"[ivr]\nsounds = {sounds}\nfirst_digit_timeout = 3\ninter_digit_timeout = 2\n"
             "max_ivr_time = 30\n"
             "[callback]\nring_timeout = 5\nmax_call_time = 60\npoll_interval = 30\n"
             "max_attempts = 1\n")  # a busy A fails the row at once
    root = await boot(tmp_path, database, sql, extra=extra)
    rig = Rig(root, sql, tmp_path)
    root.sip.incoming_handler.core = Inbound(rig.dispatcher)  # boot() put a stand-in there
    sql("UPDATE tb_user SET pincode = '1234', credit = 10 WHERE username = 'alice'")
    sql("INSERT INTO tb_user (username, usertype, authip)"
        " VALUES ('carrier', 'trafficsender', '127.0.0.1')")
    sql("INSERT INTO tb_anumbers (anumber, userid) VALUES (%s, %s)", (A_NUMBER, rig.user_id()))
    sql("INSERT INTO tb_config (name, value) VALUES ('callbackdelay', '0')")
    sql("INSERT INTO tb_rates (prefix, price, initblock, increment) VALUES"
        " ('4917', %s, 1, 1), ('4420', %s, 1, 1)", (A_PRICE, B_PRICE))
    sql("INSERT INTO tb_routes (prefix, gateway) VALUES ('4917', %s), ('4420', %s)",
        (f"sip:{{number}}@127.0.0.1:{rig.port_a}", f"sip:{{number}}@127.0.0.1:{rig.port_b}"))
    await root.reload()
    yield rig
    await root.stopService()
    for media in rig.media:
        await media.close()
    globalLogPublisher.removeObserver(observer)
    log.close()


async def ani_callback(rig, a_scenario, *a_args):
    """A traffic sender's call from 4917011 to access number 4930555, a callback to A on
    ``a_scenario``, B answering and hanging up after 3 s. Returns what the peers saw."""
    a, a_trace, rtp_a = await rig.uas(a_scenario, *a_args, port=rig.port_a)
    b, b_trace, rtp_b = await rig.uas("uas_answer_bye.xml", "-d", "3000", port=rig.port_b)
    trigger, trigger_trace, _ = rig.peer("cb_uac_trigger.xml", "-s", "4930555",
                                         "-key", "anum", A_NUMBER, target=rig.target)
    return a, a_trace, rtp_a, b, b_trace, trigger, trigger_trace


async def check_ani_callback(rig, a, a_trace, rtp_a, b, b_trace, trigger, trigger_trace):
    """What an ANI callback that completed must have left in the peers and the database."""
    await finished(trigger)
    responses = [m.split("\n", 1)[0] for kind, m in sip_messages(trigger_trace)
                 if kind == "received"]
    assert responses[-1].startswith("SIP/2.0 480"), responses
    assert not any(r.startswith("SIP/2.0 200") for r in responses), responses
    await finished(b)  # B answered, talked, hung up
    await finished(a)  # then A got mizu's BYE
    a_invite, b_invite = invite(a_trace), invite(b_trace)
    assert user_of(a_invite.split(" ")[1]) == A_NUMBER
    assert user_of(sip_header(a_invite, "From")) == "4930555"  # the access number
    assert user_of(b_invite.split(" ")[1]) == B_NUMBER
    assert user_of(sip_header(b_invite, "From")) == A_NUMBER
    assert rtp_a.loud_packets() > 20  # A heard the prompts
    (cbid,), = rig.sql("SELECT id FROM tb_callbacks")
    await wait_until(lambda: rig.status(cbid) in ("completed", "failed"), what="the end")
    assert rig.callback(cbid)[:4] == ("completed", "", "ani", rig.user_id())
    legs = rig.legs()
    assert sorted(legs) == ["A", "B", "in"], legs
    trig, leg_a, leg_b = legs["in"], legs["A"], legs["B"]
    assert (trig["leg"], trig["result"], trig["callbackid"], trig["cost"]) == (
        "in", "callback", cbid, 0)
    assert (trig["caller"], trig["callee"]) == (A_NUMBER, "4930555")
    assert (leg_a["leg"], leg_a["callee"], leg_a["callbackid"]) == ("A", A_NUMBER, cbid)
    assert (leg_b["leg"], leg_b["callee"], leg_b["caller"]) == ("B", B_NUMBER, A_NUMBER)
    billed(leg_a, A_PRICE)
    billed(leg_b, B_PRICE)
    assert 3 <= leg_b["billedduration"] <= 5  # B hung up after 3 s
    assert leg_a["billedduration"] > leg_b["billedduration"]  # A was up for the IVR too
    assert rig.credit() == Decimal(10) - leg_a["cost"] - leg_b["cost"]
    assert rig.reservations() == 0
    await rig.worker_lived()


@pytest_twisted.ensureDeferred
async def test_ani_callback_with_the_destination_by_sip_info(rig):
    """A traffic sender's call from alice's A-number is refused 480, never answered; A is
    called back from the access number, types 4420111# by SIP INFO during the prompt; B is
    called from A's number, talks 3 s and hangs up; A gets BYE; the callback completes with
    an 'in', an 'A' and a 'B' CDR, and alice pays exactly the A and B costs."""
    peers = await ani_callback(rig, "cb_uas_info.xml", "-key", "digits", ",4420111#")
    await check_ani_callback(rig, *peers)
    infos = [(m, at) for kind, m, at in sip_messages(peers[1], times=True)
             if kind == "sent" and m.startswith("INFO")]
    assert [m.split("Signal=")[1][0] for m, _ in infos] == list("4420111#")
    assert peers[2].loud_times()[0] < infos[0][1]  # typed once the prompt was playing


@pytest_twisted.ensureDeferred
async def test_ani_callback_with_the_destination_by_rfc2833(rig):
    """The same callback with the destination as RFC 2833 telephone-events, sent while the
    first prompt plays, on the payload type mizu offered for telephone-event/8000."""
    a, a_trace, rtp_a, *rest = await ani_callback(rig, "cb_uas_answer.xml")
    await wait_until(lambda: rtp_a.loud_packets() > 5, what="the destination prompt")
    await rtp_a.send_digits(B_NUMBER + "#", telephone_event(invite(a_trace)))
    await check_ani_callback(rig, a, a_trace, rtp_a, *rest)
    assert not [m for _, m in sip_messages(a_trace) if m.startswith("INFO")]


@pytest_twisted.ensureDeferred
async def test_calling_card_with_pin_then_destination_by_info(rig):
    """A calling-card number (iscallback 0, a campaign running 'callingcard'): a traffic
    sender's caller with an unknown A-number is answered 200, types alice's PIN and the
    destination by INFO, talks to B and hangs up; B gets BYE; CDRs 'in' and 'B'; alice pays
    B's cost only; the A-number is added to alice's (anumberhandling 3)."""
    (campaign,), = rig.sql("INSERT INTO tb_ccampaigns (name, ivrscript)"
                           " VALUES ('card', 'callingcard') RETURNING id")
    rig.sql("INSERT INTO tb_user (username, ivrid) VALUES ('4930777', %s)", (campaign,))
    await rig.root.reload()
    b, b_trace, _ = await rig.uas("uas_answer.xml", port=rig.port_b)
    caller, caller_trace, rtp = rig.peer(
        "cb_uac_card.xml", "-s", "4930777", "-key", "anum", "4917055",
        "-key", "digits", ",1234#,,4420111#", "-d", "5000", rtp=True, target=rig.target)
    await finished(caller)  # answered; the INFOs were taken; our BYE was answered
    await finished(b)  # B got mizu's BYE
    assert received(caller_trace, "SIP/2.0 200 OK")
    b_invite = invite(b_trace)
    assert user_of(b_invite.split(" ")[1]) == B_NUMBER
    assert user_of(sip_header(b_invite, "From")) == "4917055"
    assert rtp.loud_packets() > 20  # welcome, PIN, destination, minutes, connecting
    await wait_until(lambda: not rig.dispatcher.sessions, what="the call's settlement")
    legs = rig.legs()
    assert sorted(legs) == ["B", "in"], legs
    card, leg_b = legs["in"], legs["B"]
    assert (card["caller"], card["callee"], card["accessnumber"]) == ("4917055", "4930777",
                                                                       "4930777")
    assert card["userid"] == leg_b["userid"] == rig.user_id()
    assert card["cost"] == 0 and card["answertime"] is not None
    assert (card["result"], leg_b["result"]) == ("normal", "normal"), legs
    billed(leg_b, B_PRICE)
    assert leg_b["billedduration"] >= 1
    assert rig.credit() == Decimal(10) - leg_b["cost"]
    assert rig.sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0
    assert rig.sql("SELECT userid FROM tb_anumbers WHERE anumber = '4917055'") == [
        (rig.user_id(),)]
    assert rig.reservations() == 0
    await rig.worker_lived()


@pytest_twisted.ensureDeferred
async def test_bridged_call_is_cut_when_the_credit_runs_out(rig):
    """alice has 0.05: with A at 0.06/min and B at 0.60/min the bridged call may last about
    4 s; mizu then hangs up B and A; B's CDR says 'cut'; the credit stays >= 0 and is the
    start credit less exactly the CDR costs."""
    rig.sql("UPDATE tb_user SET credit = 0.05 WHERE username = 'alice'")
    a, a_trace, _ = await rig.uas("uas_answer.xml", port=rig.port_a)
    b, b_trace, _ = await rig.uas("uas_answer.xml", port=rig.port_b)
    cbid = await rig.dispatcher.submit(CallbackRequest(
        anum=A_NUMBER, bnum=B_NUMBER, username="alice", trusted=True))
    await wait_until(lambda: rig.status(cbid) == "bridged", what="the bridge")
    bridged = reactor.seconds()
    await finished(b)  # BYE from mizu
    await finished(a)  # BYE from mizu
    assert 2 < reactor.seconds() - bridged < 7
    assert received(b_trace, "BYE ") and received(a_trace, "BYE ")
    await wait_until(lambda: rig.status(cbid) == "completed", what="the end")
    assert rig.callback(cbid)[1] == "cut: credit used up"
    legs = rig.legs("callbackid = %s", (cbid,))
    assert legs["B"]["result"] == "cut"
    billed(legs["A"], A_PRICE)
    billed(legs["B"], B_PRICE)
    assert 2 <= legs["B"]["billedduration"] <= 5
    left = rig.credit()
    assert left >= 0
    assert left == Decimal("0.05") - legs["A"]["cost"] - legs["B"]["cost"], (
        legs, legs["B"]["endtime"] - legs["B"]["answertime"])
    assert rig.reservations() == 0
    await rig.worker_lived()


@pytest_twisted.ensureDeferred
async def test_three_wrong_pins_end_the_callback_and_charge_nothing(rig):
    """A callback for an A-number nobody owns: A must give a PIN; after the third wrong one
    (maxivrauthfail 3) mizu hangs up; the callback fails 'PIN not accepted'; B is never
    dialled and nothing is charged."""
    a, a_trace, _ = await rig.uas("cb_uas_info.xml", "-key", "digits",
                                  ",9999#,,9999#,,9999#", port=rig.port_a)
    cbid = await rig.dispatcher.submit(CallbackRequest(anum="4917099", bnum=B_NUMBER,
                                                       trusted=True))
    await finished(a)  # 15 INFOs answered, then mizu's BYE
    infos = [m for kind, m in sip_messages(a_trace) if kind == "sent" and m.startswith("INFO")]
    assert len(infos) == 15
    assert received(a_trace, "BYE ")
    await wait_until(lambda: rig.status(cbid) == "failed", what="the end")
    assert rig.callback(cbid)[:4] == ("failed", "PIN not accepted", "console", None)
    legs = rig.legs()
    assert list(legs) == ["A"]
    assert (legs["A"]["userid"], legs["A"]["cost"]) == (None, 0)
    assert rig.credit() == Decimal(10)
    assert rig.sql("SELECT count(*) FROM tb_anumbers WHERE anumber = '4917099'")[0][0] == 0
    await rig.worker_lived()


@pytest_twisted.ensureDeferred
async def test_b_busy_and_b_not_answering_fail_the_callback(rig):
    """B answers 486, then (another callback) B rings past [callback] ring_timeout = 5 and
    is cancelled: B's CDR says 'busy' / 'no_answer' at cost 0; the callback fails 'B busy' /
    'B did not answer'; A hears the end of the call and gets BYE; alice pays A's leg only."""
    credit = Decimal(10)
    for scenario, result, reason in (("uas_busy.xml", "busy", "B busy"),
                                     ("uas_ring.xml", "no_answer", "B did not answer")):
        a, a_trace, rtp_a = await rig.uas("uas_answer.xml", port=rig.port_a)
        b, b_trace, _ = await rig.uas(scenario, port=rig.port_b, rtp=False)
        cbid = await rig.dispatcher.submit(CallbackRequest(
            anum=A_NUMBER, bnum=B_NUMBER, username="alice", trusted=True))
        await finished(b)  # 486 and its ACK, or CANCEL after the ring timeout
        await finished(a)  # mizu's BYE
        await wait_until(lambda cbid=cbid: rig.status(cbid) == "failed", what="the end")
        assert rig.callback(cbid)[:2] == ("failed", reason)
        legs = rig.legs("callbackid = %s", (cbid,))
        assert (legs["B"]["result"], legs["B"]["cost"], legs["B"]["billedduration"]) == (
            result, 0, 0)
        assert legs["B"]["answertime"] is None
        # after B's end: the failure prompt and goodbye (0.3 s each, 50 packets a second)
        assert rtp_a.loud_packets(since=legs["B"]["endtime"]) > 20
        billed(legs["A"], A_PRICE)
        credit -= legs["A"]["cost"]
        assert rig.credit() == credit
    assert rig.reservations() == 0
    await rig.worker_lived()


@pytest_twisted.ensureDeferred
async def test_row_inserted_by_sql_is_dialled_at_once(rig):
    """A pending row inserted by plain SQL is dialled within a second or two, by NOTIFY
    (the slow poll is 30 s here); A answers busy: the row fails 'A busy'."""
    a, a_trace, _ = await rig.uas("uas_busy.xml", port=rig.port_a, rtp=False)
    inserted = reactor.seconds()
    rig.sql("INSERT INTO tb_callbacks (userid, anum, bnum, source, status)"
            " VALUES (%s, %s, %s, 'db', 'pending')", (rig.user_id(), A_NUMBER, B_NUMBER))
    await finished(a)
    assert reactor.seconds() - inserted < 2.5
    assert user_of(invite(a_trace).split(" ")[1]) == A_NUMBER
    (cbid,), = rig.sql("SELECT id FROM tb_callbacks")
    await wait_until(lambda: rig.status(cbid) == "failed", what="the end")
    assert rig.callback(cbid) == ("failed", "A busy", "db", rig.user_id(), 1)
    legs = rig.legs()
    assert (legs["A"]["result"], legs["A"]["cost"]) == ("busy", 0)
    assert rig.credit() == Decimal(10)


@pytest_twisted.ensureDeferred
async def test_callback_requested_over_http_reaches_sipp(rig):
    """GET /mvapireq/?apientry=callback stores the row and answers its id; A (SIPp) gets
    the INVITE; A answers busy: the row fails 'A busy'."""
    a, a_trace, _ = await rig.uas("uas_busy.xml", port=rig.port_a, rtp=False)
    port = rig.root.getServiceNamed("http").port
    response = await treq.get(f"http://127.0.0.1:{port}/mvapireq/", params={
        "apientry": "callback", "authid": "alice", "authpwd": "wonder", "anum": A_NUMBER})
    body = (await response.text()).strip()
    assert response.code == 200 and body.startswith("OK: ")
    cbid = int(body[4:])
    await finished(a)
    assert user_of(invite(a_trace).split(" ")[1]) == A_NUMBER
    await wait_until(lambda: rig.status(cbid) == "failed", what="the end")
    assert rig.callback(cbid) == ("failed", "A busy", "http", rig.user_id(), 1)


@pytest_twisted.ensureDeferred
async def test_callback_requested_by_sms_reaches_sipp(rig):
    """SMPP enabled by a reload; the SMSC (Net::SMPP) delivers "CB" from A's phone: the row
    is stored (source sms), A (SIPp) gets the INVITE and is busy: the row fails 'A busy'."""
    smsc = Smsc()
    await smsc.start()
    try:
        path = rig.root.config_path
        path.write_text(path.read_text() + f"[smpp]\nenabled = yes\nhost = 127.0.0.1\n"
                        f"port = {smsc.port}\nsystem_id = mizu\npassword = pw\n")
        await rig.root.reload()
        await smsc.wait_for("bind", status=0)
        a, a_trace, _ = await rig.uas("uas_busy.xml", port=rig.port_a, rtp=False)
        await wait_until(lambda: any(line.startswith("smpp bound")
                                     for line in rig.root.status_lines()), what="bound")
        seq = await smsc.deliver(A_NUMBER, "4000", gsm_hex("CB"))
        assert (await smsc.wait_for("deliver_sm_resp", seq=seq))["status"] == 0
        (cbid,) = rig.sql("SELECT id FROM tb_callbacks WHERE source = 'sms'")[0]
        await finished(a)
        assert user_of(invite(a_trace).split(" ")[1]) == A_NUMBER
        await wait_until(lambda: rig.status(cbid) == "failed", what="the end")
        assert rig.callback(cbid) == ("failed", "A busy", "sms", rig.user_id(), 1)
    finally:
        await rig.root.stopService()
        await smsc.stop()
