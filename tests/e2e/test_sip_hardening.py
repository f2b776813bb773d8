"""SIP hardening end to end: refusals that must never answer, hostile headers and offers,
a worker killed mid-triage, no re-INVITE, published addresses, capacity and digest bans.

Real pjsua2 workers of a running mizu against SIPp and raw loopback sockets.
"""

import gc
import os
import signal
import socket
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads
from twisted.logger import globalLogPublisher
from zope.interface import implementer

from mizu.errors import NoCapacity
from mizu.telephony import EndCause, IIncomingCallHandler
from tests.e2e import test_sip
from tests.e2e.peers import RtpPeer, free_port, sipp, wait_until
from tests.e2e.test_sip import Recorder, answered_leg, boot, finished

mizu = test_sip.mizu  # the shared fixture

CALLER = "4917012345"
ACCESS = "4930555"


def trust_loopback(sql):
    """Make 127.0.0.1 a traffic sender, so SIPp's calls reach the core unchallenged."""
    sql("INSERT INTO tb_user (username, usertype, authip)"
        " VALUES ('carrier', 'trafficsender', '127.0.0.1')")


async def sleep(seconds):
    await task.deferLater(reactor, seconds, lambda: None)


def target(mizu):
    return f"127.0.0.1:{mizu.sip_port}"


async def call_404(mizu):
    """A good call for a number that is no access number: the worker answers it 404."""
    await finished(sipp("uac_404.xml", "-s", "999", target=target(mizu)))


def invite(call_id: bytes, display: bytes = b"", body: bytes | None = None,
           number: bytes = ACCESS.encode()) -> bytes:
    """A raw UDP INVITE from 127.0.0.1 (rport: answers come back to the sending socket)."""
    if body is None:
        body = sdp()
    return (b"INVITE sip:" + number + b"@127.0.0.1 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK" + os.urandom(6).hex().encode()
            + b"\r\nFrom: " + display + b"<sip:" + CALLER.encode() + b"@127.0.0.1>;tag=1\r\n"
            b"To: <sip:" + number + b"@127.0.0.1>\r\n"
            b"Call-ID: " + call_id + b"\r\nCSeq: 1 INVITE\r\n"
            b"Contact: <sip:" + CALLER.encode() + b"@127.0.0.1:9>\r\nMax-Forwards: 70\r\n"
            b"Content-Type: application/sdp\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def sdp(streams: int = 1) -> bytes:
    media = b"".join(b"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n" % (40000 + 2 * i)
                     for i in range(streams))
    return (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            + media)


def final_reply(port, datagram, timeout=2.0):
    """Send one datagram to the worker; returns its first final response (past 1xx) or
    None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(datagram, ("127.0.0.1", port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                reply = s.recv(65535)
            except TimeoutError:
                return None
            if not reply.startswith(b"SIP/2.0 1"):
                return reply
    return None


def exchange(mizu, datagram, timeout=2.0):
    """``final_reply`` in a thread: the reactor (and the controller in it) runs on."""
    return threads.deferToThread(final_reply, mizu.sip_port, datagram, timeout)


class HangingUpCore(Recorder):
    """A core that drops every authenticated call with ``leg.hangup(code)``."""

    def __init__(self, *code):
        super().__init__()
        self.code, self.calls = code, []

    def inboundCall(self, leg, invite, access, caller):
        self.calls.append(leg)
        leg.observe(self)
        leg.hangup(*self.code)


@pytest.mark.parametrize("code", [(), (200,)], ids=["default", "200"])
@pytest_twisted.ensureDeferred
async def test_hangup_of_a_ringing_incoming_leg_never_answers_it(mizu, sql, code):
    """``hangup()`` and even ``hangup(200)`` of an unanswered incoming leg send 480, never a
    200 (a trigger call must cost the caller nothing); SIPp fails on a 200."""
    trust_loopback(sql)
    core = HangingUpCore(*code)
    mizu.sip.incoming_handler.core = core
    await finished(sipp("uac_480.xml", "-s", ACCESS, target=target(mizu)))
    (leg,) = core.calls
    await wait_until(lambda: leg.state == "ended", what="the leg's end")
    assert leg.cause.code == 480 and leg.cause.by == "local", leg.cause
    assert not core.seen("legAnswered")


@pytest_twisted.ensureDeferred
async def test_non_utf8_header_bytes_are_refused_400(mizu):
    """Bytes that are not UTF-8 in the Call-ID or the From display name get 400; nothing
    reaches the core, the same worker serves on, and six such INVITEs in a row leave no
    call slot taken (a good call after them is not refused 486)."""
    pid = mizu.sip.workers[0].pid
    for message in (invite(b"bad\xff\xfe-1@127.0.0.1"),
                    invite(b"bad-display-1@127.0.0.1", display=b'"Bj\xff\xfern" ')):
        reply = await exchange(mizu, message)
        assert reply is not None and reply.startswith(b"SIP/2.0 400"), reply
    assert mizu.core.calls == []
    assert mizu.sip.workers[0].pid == pid
    await call_404(mizu)
    for n in range(6):
        reply = await exchange(mizu, invite(b"burst\xff\xfe-%d@127.0.0.1" % n))
        assert reply is not None and reply.startswith(b"SIP/2.0 400"), (n, reply)
    await call_404(mizu)  # not 486: the refused INVITEs hold no slot
    assert mizu.core.calls == [] and mizu.sip.legs == {}
    assert mizu.sip.workers[0].pid == pid


@pytest_twisted.ensureDeferred
async def test_non_utf8_header_in_an_invite_without_sdp_is_400_and_the_worker_lives(mizu):
    """An INVITE with no SDP offer and a non-UTF-8 byte in its Call-ID (or From display
    name) is refused 400 like one with an offer, and the worker process survives it (a
    refusal inside onIncomingCall must not crash pjsua's cloned rdata)."""
    pid = mizu.sip.workers[0].pid
    for message in (invite(b"nosdp\xad-1@127.0.0.1", body=b""),
                    invite(b"nosdp-2@127.0.0.1", display=b'"B\xffo" ', body=b"")):
        message = message.replace(b"Content-Type: application/sdp\r\n", b"")
        reply = await exchange(mizu, message)
        assert reply is not None and reply.startswith(b"SIP/2.0 400"), reply
        await sleep(0.3)
        assert mizu.sip.workers[0].pid == pid and mizu.sip.workers[0].alive, \
            mizu.sip.workers[0].last_error
    await call_404(mizu)
    assert mizu.core.calls == []


@pytest_twisted.ensureDeferred
async def test_offer_with_sixteen_audio_streams_is_488_and_the_worker_survives(mizu):
    """An offer of 16 m=audio lines is refused 488; five of them at 5/s neither kill the
    worker nor keep it from taking a normal call afterwards."""
    pid = mizu.sip.workers[0].pid
    replies = []
    for n in range(5):
        replies.append(exchange(mizu, invite(b"streams-%d@127.0.0.1" % n, body=sdp(16))))
        await sleep(0.2)
    for reply in await defer.gatherResults(replies):
        assert reply is not None and reply.startswith(b"SIP/2.0 488"), reply
    assert mizu.sip.workers[0].pid == pid and mizu.sip.workers[0].alive
    assert mizu.core.calls == []
    await call_404(mizu)
    assert mizu.sip.workers[0].pid == pid


@implementer(IIncomingCallHandler)
class Undecided:
    """Records each incoming leg and never decides on it."""

    def __init__(self):
        self.legs = []

    def incomingCall(self, leg, invite):
        self.legs.append(leg)


@pytest_twisted.ensureDeferred
async def test_worker_killed_during_triage_leaves_the_caller_a_503(mizu):
    """kill -9 of a worker holding an undecided INVITE: the controller itself answers the
    caller 503 within 3 s, the leg ends by 'worker' with no unhandled error, and the
    replacement worker takes calls."""
    errors = []

    def observe(event):
        text = str(event.get("log_format", "")) + str(event.get("log_text", ""))
        if "Unhandled error in Deferred" in text or event.get("isError") and \
                "Unhandled" in text:
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    triage = mizu.sip.incoming_handler
    handler = Undecided()
    mizu.sip.setIncomingHandler(handler)
    try:
        old_pid = mizu.sip.workers[0].pid
        caller = sipp("uac_503.xml", "-s", ACCESS, target=target(mizu))
        await wait_until(lambda: handler.legs, what="the undecided leg")
        killed = reactor.seconds()
        os.kill(old_pid, signal.SIGKILL)
        await finished(caller)  # SIPp got the 503 (from the controller's own port)
        assert reactor.seconds() - killed < 3.0
        (leg,) = handler.legs
        assert leg.cause == EndCause("worker", "failed", 500, "sip worker died")
        await wait_until(lambda: mizu.sip.workers[0].alive
                         and mizu.sip.workers[0].pid != old_pid, what="a new worker")
        mizu.sip.setIncomingHandler(triage)
        await call_404(mizu)
        gc.collect()
        await sleep(0.1)
        assert errors == []
    finally:
        globalLogPublisher.removeObserver(observe)
        mizu.sip.setIncomingHandler(triage)


@pytest_twisted.ensureDeferred
async def test_an_answered_call_gets_no_reinvite_or_update(mizu):
    """A far end answering with PCMU, PCMA and telephone-event gets no re-INVITE or UPDATE
    for 30 s (pjsua's lock-codec is off, SPEC §4): SIPp aborts on either; then mizu's BYE."""
    rtp, rtp_port = RtpPeer.listen()
    port = free_port()
    proc = sipp("uas_no_reinvite.xml", "-key", "rtpport", str(rtp_port), port=port,
                timeout=60)
    observer = Recorder()
    leg = await mizu.sip.originate(f"sip:{CALLER}@127.0.0.1:{port}", ACCESS, 10, observer)
    await wait_until(lambda: observer.seen("legAnswered"), what="the answer")
    deadline = reactor.seconds() + 30
    while reactor.seconds() < deadline and not proc.done.called:
        await sleep(0.25)
    if proc.done.called:
        code, output = await proc.done
        raise AssertionError(f"SIPp ended the call early (exit {code}): {output}")
    assert leg.state == "answered"
    await leg.hangup()
    await finished(proc)
    await rtp.close()


async def originate_to(mizu, scenario, timeout=10):
    """Originate to a SIPp UAS running ``scenario``, answer, hang up; SIPp must exit 0."""
    rtp, rtp_port = RtpPeer.listen()
    port = free_port()
    proc = sipp(scenario, "-key", "rtpport", str(rtp_port), port=port)
    observer = Recorder()
    leg = await mizu.sip.originate(f"sip:{CALLER}@127.0.0.1:{port}", ACCESS, timeout,
                                   observer)
    await wait_until(lambda: observer.seen("legAnswered") or observer.seen("legEnded")
                     or proc.done.called, what="the answer")
    await rtp.close()
    if not observer.seen("legAnswered"):
        code, output = await proc.done
        raise AssertionError(f"not answered: {observer.events}; SIPp exit {code}: {output}")
    await leg.hangup()
    await finished(proc)


@pytest_twisted.ensureDeferred
async def test_public_address_is_what_an_originated_invite_carries(tmp_path, database, sql):
    """With [sip] public_address = 127.0.0.9 an originated INVITE's Contact and SDP c= line
    name 127.0.0.9 and its From no 0.0.0.0 (SIPp's regexp checks fail the call otherwise)."""
    root = await boot(tmp_path, database, sql, sip="public_address = 127.0.0.9\n")
    try:
        await originate_to(root, "uas_public_address.xml")
    finally:
        await root.stopService()


@pytest_twisted.ensureDeferred
async def test_listening_on_all_interfaces_never_publishes_0000(tmp_path, database, sql):
    """A worker on listen = 0.0.0.0:<port> puts no 0.0.0.0 in the From, Contact or Via of
    an originated INVITE (SIPp's regexp checks fail the call otherwise)."""
    root = await boot(tmp_path, database, sql, listen_host="0.0.0.0")
    try:
        await originate_to(root, "uas_no_wildcard.xml")
    finally:
        await root.stopService()


@pytest_twisted.ensureDeferred
async def test_max_calls_caps_a_worker(tmp_path, database, sql):
    """workers = 1, max_calls = 1: status shows calls=0/1; with one call up a second
    originate fails NoCapacity and an incoming call is answered 486 by the worker."""
    root = await boot(tmp_path, database, sql, sip="max_calls = 1\n")
    try:
        status = root.status_lines()
        assert any(line.startswith("sip worker 0 ") and " calls=0/1 engine=" in line
                   for line in status), status
        leg, rtp, proc = await answered_leg(root)
        with pytest.raises(NoCapacity):
            await root.sip.originate(f"sip:{CALLER}@127.0.0.1:{free_port()}", ACCESS, 5,
                                     Recorder())
        await finished(sipp("uac_486.xml", "-s", ACCESS, target=target(root)))
        assert root.core.calls == []
        await leg.hangup()
        await finished(proc)
        await rtp.close()
    finally:
        await root.stopService()


@pytest_twisted.ensureDeferred
async def test_digest_failures_ban_the_source_until_cleared(tmp_path, database, sql):
    """[security] ban_failures = 3: three wrong passwords (403 each) ban 127.0.0.1 for
    "sip"; the right password is then refused 403 at once; after bans.clear() it works."""
    root = await boot(tmp_path, database, sql, extra="[security]\nban_failures = 3\n")
    try:
        for _ in range(3):
            await finished(sipp("uac_auth_403.xml", "-s", ACCESS, "-au", "alice", "-ap",
                                "guess", target=target(root)))
        assert [(b.kind, b.address) for b in root.bans.active()] == [("sip", "127.0.0.1")]
        await finished(sipp("uac_403.xml", "-s", ACCESS, target=target(root)))
        assert root.core.calls == []
        root.bans.clear()
        await finished(sipp("uac_auth_dtmf.xml", "-s", ACCESS, "-au", "alice", "-ap",
                            "wonder", target=target(root)))
        (leg, access, caller), = root.core.calls
        assert caller.method == "digest" and caller.user.username == "alice"
    finally:
        await root.stopService()
