"""The SIP bridge's supervision and placement, with fake workers and a Clock."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import directlyProvides
from zope.interface.verify import verifyObject

from mizu.config import SipConfig
from mizu.errors import LegGone, NoCapacity, ShuttingDown, TelephonyError
from mizu.sip import amp as cmd
from mizu.sip.bridge import SipBridge
from mizu.sip.fake import FakeTelephony
from mizu.telephony import EndCause, IIncomingCallHandler, ILeg, ITelephony


class FakeWorker:
    """Stands in for a worker process: commands are recorded, death is on demand."""

    def __init__(self, bridge, index, port, pids, hello=True):
        self.bridge, self.index, self.port = bridge, index, port
        self.capacity, self.link, self.pid = 0, object(), next(pids)
        self.engine, self.setup_rate = "", 0.0
        self.commands = []
        self.stopped = False
        self.alive = False
        self.hello = hello
        self.pending = None  # when set, commands wait for the test to answer them

    def spawn(self):
        if not self.hello:  # dies before saying Hello
            d = defer.fail(TelephonyError("cannot start: Address already in use"))
            self.bridge.workerEnded(self, Failure(RuntimeError("exit status 2")))
            return d
        self.capacity, self.alive = 4, True
        self.engine, self.setup_rate = "wheel-2.15.1", 15.0
        return defer.succeed(self)

    def call(self, command, **kwargs):
        self.commands.append((command, kwargs))
        if self.pending is not None:
            d = defer.Deferred()
            self.pending.append(d)
            return d
        return defer.succeed({})

    def sent(self, command):
        return [kw for c, kw in self.commands if c is command]

    def stop(self, grace):
        self.stopped = True
        return defer.succeed(None)

    def die(self):
        self.capacity, self.alive, self.engine = 0, False, ""
        self.bridge.workerEnded(self, Failure(RuntimeError("killed by signal 9")))


class Recorder:
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        return lambda leg, *args: self.events.append((name, leg.id, *args))


def make_bridge(workers=2, rate=1000, grace=30, max_calls=1000, hello=lambda n: True):
    clock = Clock()
    pids = iter(range(100, 1000))
    config = SipConfig(host="127.0.0.1", port=5070, workers=workers, shutdown_grace=grace,
                       max_calls=max_calls)
    spawned = []

    def spawn(index):
        worker = FakeWorker(bridge, index, 5070 + index, pids, hello(len(spawned)))
        spawned.append(worker)
        return worker

    bridge = SipBridge(config, clock, setups_per_second=rate, spawn=spawn)
    bridge.startService()
    return bridge, clock, spawned


def originate(bridge, observer=None, **kwargs):
    """Originate and let its setup slot come (1/rate s at most); returns [leg or failure]."""
    out = []
    bridge.originate("sip:1@127.0.0.1", "49", 30, observer or Recorder(), **kwargs
                     ).addBoth(out.append)
    if not out:
        bridge._reactor.advance(1.0 / bridge._rate)
    return out


def dial(bridge):
    """Originate without waiting; returns the list its result will land in."""
    out = []
    bridge.originate("sip:1@127.0.0.1", "49", 30, Recorder()).addBoth(out.append)
    return out


def test_interfaces_are_provided():
    """The bridge, its legs and the fake all provide the core's interfaces."""
    bridge, _, _ = make_bridge()
    (leg,) = originate(bridge)
    assert verifyObject(ITelephony, bridge) and verifyObject(ILeg, leg)
    fake = FakeTelephony()
    assert verifyObject(ITelephony, fake)
    assert verifyObject(ILeg, fake.originate("sip:1@h", "2", 30, Recorder()).result)


def test_workers_listen_on_consecutive_ports_and_report_status():
    """Worker n listens on the port + n; status has one line each."""
    bridge, _, spawned = make_bridge(workers=3)
    assert [w.port for w in spawned] == [5070, 5071, 5072]
    assert bridge.status_lines() == [
        "sip worker 0 pid=100 port=5070 calls=0/4 engine=wheel-2.15.1",
        "sip worker 1 pid=101 port=5071 calls=0/4 engine=wheel-2.15.1",
        "sip worker 2 pid=102 port=5072 calls=0/4 engine=wheel-2.15.1"]


def test_both_legs_of_a_session_share_a_worker():
    """slots=2 keeps a slot for the partner; near= puts the partner beside its leg."""
    bridge, _, spawned = make_bridge(workers=2)
    (a,) = originate(bridge, slots=2)
    (other,) = originate(bridge, slots=2)
    assert {a.worker, other.worker} == {0, 1}  # the emptier worker is chosen
    (b,) = originate(bridge, near=a)
    assert b.worker == a.worker and a.reserved == 0
    assert " calls=2/4 " in bridge.status_lines()[a.worker]


def test_no_room_is_refused_and_available_counts_what_fits():
    """available() says how many sessions fit; beyond it originate fails with NoCapacity."""
    bridge, _, _ = make_bridge(workers=2)
    assert bridge.available() == 8 and bridge.available(2) == 4
    originate(bridge, slots=2)
    assert bridge.available(2) == 3 and bridge.available() == 6
    for _ in range(3):
        originate(bridge, slots=2)
    assert bridge.available(2) == 0
    (failure,) = originate(bridge)
    assert failure.check(NoCapacity)


def test_max_calls_is_spread_over_the_workers():
    """[sip] max_calls is the node's limit: each worker gets its share."""
    bridge, _, _ = make_bridge(workers=3, max_calls=7)
    assert [bridge.share(i) for i in range(3)] == [3, 2, 2]
    bridge, _, _ = make_bridge(workers=2, max_calls=1)
    assert [bridge.share(i) for i in range(2)] == [1, 1]  # never 0: a worker holds a call


def test_originate_waiting_for_its_turn_can_be_cancelled():
    """Cancelling an originate that waits for pacing frees its slot and sends nothing."""
    bridge, clock, spawned = make_bridge(workers=1, rate=1)
    dial(bridge)
    d = bridge.originate("sip:2@h", "49", 30, Recorder())
    assert bridge.available() == 2
    failures = []
    d.addErrback(failures.append)
    d.cancel()
    assert failures[0].check(defer.CancelledError)
    assert bridge.available() == 3
    clock.advance(2)
    assert len(spawned[0].sent(cmd.Originate)) == 1


def test_originate_cancelled_after_the_invite_left_hangs_the_leg_up():
    """Cancelled while the worker places the call: the leg is hung up once it exists."""
    bridge, _, spawned = make_bridge(workers=1)
    spawned[0].pending = []
    d = bridge.originate("sip:2@h", "49", 30, Recorder())
    d.addErrback(lambda f: None)
    d.cancel()
    spawned[0].pending.pop(0).callback({})
    (hangup,) = spawned[0].sent(cmd.Hangup)
    assert hangup["leg"] == spawned[0].sent(cmd.Originate)[0]["leg"]


def test_the_observer_sees_every_event_from_the_first():
    """The observer given to originate gets the ringing that comes before originate fires."""
    bridge, _, spawned = make_bridge(workers=1)
    spawned[0].pending = []
    events = Recorder()
    out = []
    bridge.originate("sip:2@h", "49", 30, events).addCallback(out.append)
    name = spawned[0].sent(cmd.Originate)[0]["leg"]
    bridge.workerCallState(name, "ringing", 180, "Ringing", "")
    spawned[0].pending.pop(0).callback({})
    assert events.events == [("legRinging", name)] and out[0].id == name


def test_observing_an_ended_leg_reports_its_end_at_once():
    """observe() after the end still delivers legEnded, so no end is ever missed."""
    bridge, _, _ = make_bridge(workers=1)
    (leg,) = originate(bridge)
    bridge.workerCallState(leg.id, "ended", 486, "Busy Here", "remote")
    late = Recorder()
    leg.observe(late)
    assert late.events == [("legEnded", leg.id, EndCause("remote", "busy", 486, "Busy Here"))]
    failures = []
    leg.answer().addErrback(failures.append)
    assert failures[0].check(LegGone)


def test_play_ids_tell_playlists_apart():
    """Each play gets its own id; PlayDone carries it; a failed play reports done at once."""
    bridge, _, spawned = make_bridge(workers=1)
    events = Recorder()
    (leg,) = originate(bridge, events)
    first = leg.play(["a.wav", "b.wav"])
    second = leg.play("c.wav")
    assert first != second
    assert [kw["paths"] for kw in spawned[0].sent(cmd.Play)] == [["a.wav", "b.wav"], ["c.wav"]]
    bridge.workerPlayDone(leg.id, first)
    assert events.events == [("legPlayDone", leg.id, first)]
    spawned[0].call = lambda command, **kw: defer.fail(TelephonyError("no active audio"))
    third = leg.play(["d.wav"])
    assert events.events[-1] == ("legPlayDone", leg.id, third)


def test_call_setups_are_spaced_per_worker():
    """Setups on one worker start 1/rate seconds apart; another worker has its own pace."""
    bridge, clock, spawned = make_bridge(workers=1, rate=2)
    first, second, third = dial(bridge), dial(bridge), dial(bridge)
    assert first and not second and not third
    clock.advance(0.5)
    assert second and not third
    clock.advance(0.5)
    assert third and len(spawned[0].sent(cmd.Originate)) == 3
    bridge.workerCallState(first[0].id, "ended", 200, "BYE", "remote")
    clock.advance(5)
    assert dial(bridge)  # idle time is not saved up into a burst
    assert not dial(bridge)


def test_setups_follow_the_rate_each_worker_reports():
    """Without a rate of its own the bridge paces each worker at the rate its Hello gave:
    15/s for the wheel, 100/s for a built engine."""
    for reported, gap in ((15.0, 1 / 15), (100.0, 1 / 100)):
        bridge, clock, spawned = make_bridge(workers=1, rate=None)
        spawned[0].setup_rate = reported
        first, second = dial(bridge), dial(bridge)
        assert first and not second
        clock.advance(gap * 0.9)
        assert not second
        clock.advance(gap * 0.2)
        assert second and len(spawned[0].sent(cmd.Originate)) == 2


def test_a_dead_worker_ends_its_legs_and_is_replaced_at_once():
    """Legs on a dead worker end by 'worker'; a worker that ran is back after 0.5 s each
    time it is killed, so hostile traffic cannot stretch the restart delay."""
    bridge, clock, spawned = make_bridge(workers=1)
    events = Recorder()
    (leg,) = originate(bridge, events)
    spawned[0].die()
    assert events.events == [("legEnded", leg.id,
                              EndCause("worker", "failed", 500, "sip worker died"))]
    assert bridge.legs == {}
    assert bridge.status_lines() == ["sip worker 0 pid=100 port=5070 calls=0/0 down"]
    assert bridge.available() == 0
    (refused,) = originate(bridge)  # no live worker meanwhile
    assert refused.check(NoCapacity)
    for n in range(1, 6):
        clock.advance(0.4)
        assert len(spawned) == n
        clock.advance(0.1)
        assert len(spawned) == n + 1 and spawned[n].port == 5070
        spawned[n].die()
    clock.advance(0.5)
    assert bridge.status_lines() == [
        "sip worker 0 pid=106 port=5070 calls=0/4 engine=wheel-2.15.1"]


def test_failed_starts_back_off_and_are_retried():
    """A worker that cannot start is retried after 0.5, 1, 2 ... s, never given up on."""
    bridge, clock, spawned = make_bridge(workers=1, hello=lambda n: n == 0 or n >= 4)
    spawned[0].die()
    waits = []
    for n in range(1, 5):
        before = clock.seconds()
        while len(spawned) == n:
            clock.advance(0.25)  # exact in binary: the waits add up without drift
        waits.append(clock.seconds() - before)
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert spawned[-1].alive and bridge.available() == 4


def test_ending_one_bridged_leg_leaves_the_other_to_the_session():
    """Hangup propagation is the session's: the bridge does not hang up the partner."""
    bridge, _, spawned = make_bridge(workers=1)
    (a,) = originate(bridge, slots=2)
    (b,) = originate(bridge, near=a)
    a.bridge(b)
    bridge.workerCallState(b.id, "ended", 200, "BYE", "remote")
    assert spawned[0].sent(cmd.Hangup) == []
    assert a.state != "ended" and b.cause.by == "remote" and b.cause.cause == "normal"
    a.unbridge(b)
    assert spawned[0].sent(cmd.Unbridge) == []  # b is gone: nothing to send


def test_incoming_calls_go_to_the_handler():
    """An incoming INVITE becomes a leg and a parsed Invite for the handler."""
    bridge, _, spawned = make_bridge(workers=1)
    seen = []

    class Handler:
        def incomingCall(self, leg, invite):
            seen.append((leg, invite))

    handler = Handler()
    directlyProvides(handler, IIncomingCallHandler)
    bridge.setIncomingHandler(handler)
    bridge.workerIncoming("w5070-1", "sip:4930@127.0.0.1", "<sip:49170@x>", "<sip:4930@y>",
                          "", "", "cid", "127.0.0.1:5090", "udp", [])
    leg, invite = seen[0]
    assert leg.direction == "in" and leg.worker == 0
    assert (invite.source_host, invite.source_port) == ("127.0.0.1", 5090)
    assert "leg w5070-1 in worker=0" in bridge.call_lines()[0]


def test_without_a_handler_incoming_calls_are_refused():
    """Until the core is attached, an incoming call is answered 480."""
    bridge, _, spawned = make_bridge(workers=1)
    bridge.workerIncoming("w5070-1", "sip:1@h", "", "", "", "", "", "127.0.0.1:1")
    assert spawned[0].commands[-1][0] is cmd.Reject
    assert spawned[0].commands[-1][1]["code"] == 480


def test_stop_gives_live_calls_their_grace_time():
    """Stopping waits for live legs up to shutdown_grace, then stops every worker."""
    bridge, clock, spawned = make_bridge(workers=1, grace=10)
    (leg,) = originate(bridge)
    stopped = []
    bridge.stopService().addCallback(stopped.append)
    assert not stopped and not spawned[0].stopped
    (refused,) = originate(bridge)
    assert refused.check(ShuttingDown) and bridge.available() == 0
    clock.advance(10)
    assert stopped and spawned[0].stopped


def test_stop_is_immediate_once_the_last_leg_ends():
    """The grace ends early when the last live leg ends."""
    bridge, clock, spawned = make_bridge(workers=1, grace=10)
    (leg,) = originate(bridge)
    stopped = []
    bridge.stopService().addCallback(stopped.append)
    bridge.workerCallState(leg.id, "ended", 200, "BYE", "remote")
    assert stopped and spawned[0].stopped
    clock.advance(10)  # the grace timer was cancelled
    assert not clock.getDelayedCalls()


def test_bridging_legs_on_different_workers_is_refused():
    """Audio can only be bridged inside one worker."""
    bridge, _, _ = make_bridge(workers=2)
    (a,) = originate(bridge, slots=2)
    (b,) = originate(bridge, slots=2)
    failure = []
    a.bridge(b).addErrback(failure.append)
    assert failure[0].check(TelephonyError)
