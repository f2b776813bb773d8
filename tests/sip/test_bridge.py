"""The SIP bridge's supervision and placement, with fake workers and a Clock."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import directlyProvides
from zope.interface.verify import verifyObject

from mizu.config import SipConfig
from mizu.sip import amp as cmd
from mizu.sip.bridge import SipBridge
from mizu.sip.fake import FakeTelephony
from mizu.telephony import IIncomingCallHandler, ILeg, ITelephony


class FakeWorker:
    """Stands in for a worker process: commands are recorded, death is on demand."""

    def __init__(self, bridge, index, port, pids):
        self.bridge, self.index, self.port = bridge, index, port
        self.capacity, self.link, self.pid = 0, object(), next(pids)
        self.commands = []
        self.stopped = False
        self.alive = False

    def spawn(self):
        self.capacity, self.alive = 4, True
        return defer.succeed(self)

    def call(self, command, **kwargs):
        self.commands.append((command, kwargs))
        return defer.succeed({})

    def stop(self, grace):
        self.stopped = True
        return defer.succeed(None)

    def die(self):
        self.capacity, self.alive = 0, False
        self.bridge.workerEnded(self, Failure(RuntimeError("killed by signal 9")))


class Recorder:
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        return lambda leg, *args: self.events.append((name, leg.id, *args))


def make_bridge(workers=2, rate=20, grace=30):
    clock = Clock()
    pids = iter(range(100, 1000))
    config = SipConfig(host="127.0.0.1", port=5070, workers=workers, shutdown_grace=grace)
    spawned = []

    def spawn(index):
        worker = FakeWorker(bridge, index, 5070 + index, pids)
        spawned.append(worker)
        return worker

    bridge = SipBridge(config, clock, setups_per_second=rate, spawn=spawn)
    bridge.startService()
    return bridge, clock, spawned


def originate(bridge, **kwargs):
    out = []
    bridge.originate("sip:1@127.0.0.1", "49", 30, **kwargs).addBoth(out.append)
    return out


def test_interfaces_are_provided():
    """The bridge, its legs and the fake all provide the core's interfaces."""
    bridge, _, _ = make_bridge()
    (leg,) = originate(bridge)
    assert verifyObject(ITelephony, bridge) and verifyObject(ILeg, leg)
    fake = FakeTelephony()
    assert verifyObject(ITelephony, fake)
    assert verifyObject(ILeg, fake.originate("sip:1@h", "2", 30).result)


def test_workers_listen_on_consecutive_ports_and_report_status():
    """Worker n listens on the port + n; status has one line each."""
    bridge, _, spawned = make_bridge(workers=3)
    assert [w.port for w in spawned] == [5070, 5071, 5072]
    assert bridge.status_lines() == [
        "sip worker 0 pid=100 port=5070 calls=0/4",
        "sip worker 1 pid=101 port=5071 calls=0/4",
        "sip worker 2 pid=102 port=5072 calls=0/4"]


def test_both_legs_of_a_session_share_a_worker():
    """slots=2 keeps a slot for the partner; near= puts the partner beside its leg."""
    bridge, _, spawned = make_bridge(workers=2)
    (a,) = originate(bridge, slots=2)
    (other,) = originate(bridge, slots=2)
    assert {a.worker, other.worker} == {0, 1}  # the emptier worker is chosen
    (b,) = originate(bridge, near=a)
    assert b.worker == a.worker and a.reserved == 0
    assert bridge.status_lines()[a.worker].endswith("calls=2/4")


def test_no_room_is_refused():
    """When no worker has the slots asked for, originate fails with WorkerFull."""
    bridge, _, _ = make_bridge(workers=1)
    originate(bridge, slots=2)
    originate(bridge, slots=2)
    (failure,) = originate(bridge)
    assert failure.check(cmd.WorkerFull)


def test_call_setups_are_rate_limited_per_worker():
    """Beyond the per-second limit, an originate waits for the next second."""
    bridge, clock, spawned = make_bridge(workers=1, rate=2)
    first, second, third = originate(bridge), originate(bridge), originate(bridge)
    assert first and second and not third
    sent = [c for c in spawned[0].commands if c[0] is cmd.Originate]
    assert len(sent) == 2
    clock.advance(1.0)
    assert third and len([c for c in spawned[0].commands if c[0] is cmd.Originate]) == 3


def test_a_dead_worker_ends_its_legs_and_is_replaced_with_backoff():
    """Legs on a dead worker end with a reason; it restarts on its port after a delay."""
    bridge, clock, spawned = make_bridge(workers=1)
    (leg,) = originate(bridge)
    events = Recorder()
    leg.observe(events)
    spawned[0].die()
    assert events.events == [("legEnded", leg.id, 500, "sip worker died")]
    assert bridge.legs == {}
    assert bridge.status_lines() == ["sip worker 0 pid=100 port=5070 calls=0/0"]
    (refused,) = originate(bridge)  # no live worker meanwhile
    assert refused.check(cmd.WorkerFull)
    clock.advance(0.4)
    assert len(spawned) == 1
    clock.advance(0.1)
    assert len(spawned) == 2 and spawned[1].port == 5070 and spawned[1].pid == 101
    spawned[1].die()
    clock.advance(0.5)
    assert len(spawned) == 2  # the second restart waits longer
    clock.advance(0.5)
    assert len(spawned) == 3
    assert bridge.status_lines() == ["sip worker 0 pid=102 port=5070 calls=0/4"]


def test_ending_one_bridged_leg_hangs_up_the_other():
    """A bridge ends as a whole, whichever side hangs up."""
    bridge, _, spawned = make_bridge(workers=1)
    (a,) = originate(bridge, slots=2)
    (b,) = originate(bridge, near=a)
    a.bridge(b)
    bridge.workerCallState(b.id, "ended", 200, "BYE")
    hangups = [c[1]["leg"] for c in spawned[0].commands if c[0] is cmd.Hangup]
    assert hangups == [a.id]


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
                          "", "", "cid", "127.0.0.1:5090")
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
    assert refused.check(cmd.WorkerError)
    clock.advance(10)
    assert stopped and spawned[0].stopped


def test_stop_is_immediate_once_the_last_leg_ends():
    """The grace ends early when the last live leg ends."""
    bridge, clock, spawned = make_bridge(workers=1, grace=10)
    (leg,) = originate(bridge)
    stopped = []
    bridge.stopService().addCallback(stopped.append)
    bridge.workerCallState(leg.id, "ended", 200, "BYE")
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
    assert failure[0].check(cmd.WorkerError)
