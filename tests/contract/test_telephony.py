"""The telephony contract (mizu.telephony), run against the fake and the real SIP bridge.

Each test runs twice: on ``FakeTelephony`` with scripted far ends, and on a ``SipBridge``
with a pjsua2 worker whose far ends are SIPp processes. The fake is what the core's fast
tests use; this suite keeps it from drifting away from the real thing.
"""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from zope.interface.verify import verifyObject

from mizu.config import SipConfig
from mizu.errors import LegGone
from mizu.sip.bridge import SipBridge
from mizu.sip.fake import FakeTelephony
from mizu.telephony import ILeg, ITelephony
from tests.e2e.peers import RtpPeer, free_port, sipp, wait_until

PROMPT = os.path.join(os.path.dirname(__file__), "..", "..", "mizu", "sounds", "en",
                      "goodbye.wav")


class Events:
    """An observer that keeps every event in order."""

    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        if not name.startswith("leg"):
            raise AttributeError(name)
        return lambda leg, *args: self.events.append((name, *args))

    def names(self):
        return [e[0] for e in self.events]

    def ended(self):
        return [e[1] for e in self.events if e[0] == "legEnded"]


class FakeRig:
    """The fake, its far ends scripted by URI."""

    def __init__(self):
        self.telephony = FakeTelephony(capacity=4, clock=reactor)

    async def start(self):
        pass

    def far_end(self, kind: str) -> str:
        uri = f"sip:{kind}@fake.invalid"
        self.telephony.far_ends[uri] = kind
        return uri

    async def stop(self):
        pass


class SipRig:
    """One pjsua2 worker; each far end is a SIPp UAS with a test RTP socket as media."""

    SCENARIOS = {"answer": ("uas_answer.xml",), "busy": ("uas_busy.xml",),
                 "ring": ("uas_ring.xml",), "answer_bye": ("uas_answer_bye.xml", "-d", "500")}

    def __init__(self):
        port = free_port(1)
        self.telephony = SipBridge(SipConfig(host="127.0.0.1", port=port, workers=1,
                                             shutdown_grace=0), reactor)
        self.peers = []

    async def start(self):
        await self.telephony.startService()

    def far_end(self, kind: str) -> str:
        rtp, rtp_port = RtpPeer.listen()
        port = free_port()
        scenario, *args = self.SCENARIOS[kind]
        self.peers.append((sipp(scenario, "-key", "rtpport", str(rtp_port), *args,
                                port=port), rtp))
        return f"sip:4917012345@127.0.0.1:{port}"

    async def stop(self):
        await self.telephony.stopService()
        for proc, rtp in self.peers:
            proc.kill()
            await proc.done
            await rtp.close()


@pytest_twisted.async_yield_fixture(params=["fake", "sip"])
async def rig(request):
    """Each contract test runs on the fake and on the real bridge."""
    made = FakeRig() if request.param == "fake" else SipRig()
    await made.start()
    yield made
    await made.stop()


async def seconds(s):
    await task.deferLater(reactor, s, lambda: None)


async def answered(rig, kind="answer"):
    events = Events()
    leg = await rig.telephony.originate(rig.far_end(kind), "4930555", 10, events)
    await wait_until(lambda: "legAnswered" in events.names(), what="the answer")
    return leg, events


@pytest_twisted.ensureDeferred
async def test_an_answered_leg_reports_ringing_answer_and_a_local_end(rig):
    """Events arrive in order from the first one; a local hangup ends the leg 'normal'."""
    assert verifyObject(ITelephony, rig.telephony)
    leg, events = await answered(rig)
    assert verifyObject(ILeg, leg) and leg.direction == "out" and leg.state == "answered"
    assert events.names()[:2] == ["legRinging", "legAnswered"]
    await leg.hangup()
    await wait_until(lambda: events.ended(), what="the end")
    (cause,) = events.ended()
    assert (cause.by, cause.cause) == ("local", "normal") and leg.state == "ended"


@pytest_twisted.ensureDeferred
async def test_a_busy_far_end_ends_the_leg_remote_busy(rig):
    """486 from the far end: legEnded by 'remote' with cause 'busy' and the code."""
    events = Events()
    await rig.telephony.originate(rig.far_end("busy"), "4930555", 10, events)
    await wait_until(lambda: events.ended(), what="the busy signal")
    (cause,) = events.ended()
    assert (cause.by, cause.cause, cause.code) == ("remote", "busy", 486)
    assert "legAnswered" not in events.names()


@pytest_twisted.ensureDeferred
async def test_the_ring_timeout_ends_an_unanswered_leg(rig):
    """A leg ringing past its ring timeout ends by 'timeout', cause 'no_answer'."""
    events = Events()
    began = reactor.seconds()
    await rig.telephony.originate(rig.far_end("ring"), "4930555", 1.0, events)
    await wait_until(lambda: events.ended(), what="the ring timeout")
    assert 0.9 < reactor.seconds() - began < 5
    (cause,) = events.ended()
    assert (cause.by, cause.cause) == ("timeout", "no_answer")
    assert events.names()[0] == "legRinging"


@pytest_twisted.ensureDeferred
async def test_a_far_hangup_is_remote_and_the_ended_leg_refuses_more(rig):
    """The far end's BYE ends the leg by 'remote'; then commands fail with LegGone, a
    hangup is a no-op, and a late observer still hears legEnded."""
    leg, events = await answered(rig, "answer_bye")
    await wait_until(lambda: events.ended(), timeout=10, what="the far BYE")
    assert (events.ended()[0].by, events.ended()[0].cause) == ("remote", "normal")
    for attempt in (leg.stopPlaying, lambda: leg.sendDigits("1"), leg.answer):
        with pytest.raises(LegGone):
            await attempt()
    with pytest.raises(LegGone):
        leg.play([PROMPT])
    await leg.hangup()
    late = Events()
    leg.observe(late)
    assert late.names() == ["legEnded"] and late.ended()[0] == leg.cause


@pytest_twisted.ensureDeferred
async def test_plays_have_ids_and_a_stopped_play_never_reports_done(rig):
    """Each play returns a new id; legPlayDone carries the id of the play that ended,
    once; a play stopped early reports nothing."""
    leg, events = await answered(rig)
    stopped = leg.play([PROMPT])
    await leg.stopPlaying()
    played = leg.play([PROMPT, PROMPT])
    assert played != stopped
    await wait_until(lambda: "legPlayDone" in events.names(), timeout=10,
                     what="the end of the playlist")
    await seconds(0.3)
    assert [e for e in events.events if e[0] == "legPlayDone"] == [("legPlayDone", played)]
    await leg.hangup()


@pytest_twisted.ensureDeferred
async def test_capacity_is_taken_by_live_legs_and_given_back(rig):
    """available() counts free slots: a live leg takes one, its end gives it back."""
    free = rig.telephony.available()
    assert free >= 2 and rig.telephony.available(2) == free // 2
    leg, events = await answered(rig)
    assert rig.telephony.available() == free - 1
    await leg.hangup()
    await wait_until(lambda: events.ended(), what="the end")
    assert rig.telephony.available() == free


@pytest_twisted.ensureDeferred
async def test_ending_one_of_two_bridged_legs_leaves_the_other_up(rig):
    """Bridged legs share a worker; one leg's end does not end the other, and unbridge
    keeps both up: what happens next is the session's call."""
    events_a, events_b = Events(), Events()
    a = await rig.telephony.originate(rig.far_end("answer"), "4930555", 10, events_a,
                                      slots=2)
    b = await rig.telephony.originate(rig.far_end("answer_bye"), "4930555", 10, events_b,
                                      near=a)
    assert a.worker == b.worker
    await wait_until(lambda: a.state == b.state == "answered", what="both answers")
    await a.bridge(b)
    await wait_until(lambda: events_b.ended(), timeout=10, what="B's hangup")
    await seconds(0.3)
    assert a.state == "answered" and not events_a.ended()
    await a.unbridge(b)  # B is gone: nothing left to disconnect, and no error
    await a.hangup()
    await wait_until(lambda: events_a.ended(), what="A's end")
