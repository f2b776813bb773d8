"""The AMP link: controller commands reach the worker engine, worker events the bridge."""

from twisted.test import iosim

from mizu.errors import LegGone, NoCapacity
from mizu.sip import amp as cmd
from mizu.sip.engine import BUILT_LIMITS
from mizu.sip.link import ControllerLink, WorkerLink


class FakeEngine:
    port, capacity, engine, limits = 5070, 1000, "pjproject-2.17+mizu1", BUILT_LIMITS

    def __init__(self):
        self.calls = []
        self.protocol = None

    def __getattr__(self, name):
        def record(*args):
            self.calls.append((name, *args))
            if args and args[0] == "full":
                raise NoCapacity("all 1000 call slots in use")
            if args and args[0] == "broken":
                raise LegGone("no live leg broken")
            return (7, 9) if name == "stats" else None

        return record


class Sink:
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.events.append((name, args, kwargs))


def connect():
    engine, sink, lost = FakeEngine(), Sink(), []
    controller, worker, pump = iosim.connectedServerAndClient(
        lambda: WorkerLink(engine, lambda: lost.append(True)),
        lambda: ControllerLink(sink))
    return controller, worker, pump, engine, sink, lost


def result(d, pump):
    out = []
    d.addBoth(out.append)
    pump.flush()
    return out[0]


def test_commands_reach_the_engine():
    """Each command calls the engine with its arguments and answers."""
    controller, _, pump, engine, _, _ = connect()
    hello = result(controller.callRemote(cmd.Hello), pump)
    assert hello["port"] == 5070 and hello["capacity"] == 1000 and hello["pid"] > 0
    assert hello["engine"] == "pjproject-2.17+mizu1" and hello["setup_rate"] == 100.0
    result(controller.callRemote(cmd.Originate, leg="c1", uri="sip:1@h", caller="49",
                                 headers=["X-A: 1"], ring_timeout=30.0), pump)
    result(controller.callRemote(cmd.Reject, leg="w1", code=401, reason="Unauthorized",
                                 headers=['WWW-Authenticate: Digest realm="mizu"']), pump)
    result(controller.callRemote(cmd.Bridge, leg="c1", other="c2"), pump)
    result(controller.callRemote(cmd.Unbridge, leg="c1", other="c2"), pump)
    result(controller.callRemote(cmd.Play, leg="c1", play_id=3, paths=["/a.wav", "/b.wav"]),
           pump)
    assert result(controller.callRemote(cmd.Stats, leg="c1"), pump) == {
        "rx_packets": 7, "tx_packets": 9}
    assert engine.calls == [
        ("originate", "c1", "sip:1@h", "49", ["X-A: 1"], 30.0),
        ("reject", "w1", 401, "Unauthorized", ['WWW-Authenticate: Digest realm="mizu"']),
        ("bridge", "c1", "c2"),
        ("unbridge", "c1", "c2"),
        ("play", "c1", 3, ["/a.wav", "/b.wav"]),
        ("stats", "c1"),
    ]


def test_worker_errors_arrive_as_their_types():
    """A full worker and an unknown leg raise NoCapacity and LegGone at the controller."""
    controller, _, pump, _, _, _ = connect()
    full = result(controller.callRemote(cmd.Originate, leg="full", uri="sip:x@h", caller="",
                                        headers=[], ring_timeout=1.0), pump)
    assert full.check(NoCapacity)
    broken = result(controller.callRemote(cmd.Hangup, leg="broken", code=200), pump)
    assert broken.check(LegGone) and "no live leg broken" in str(broken.value)


def test_events_reach_the_bridge_in_order():
    """Incoming, state, digit and prompt events arrive at the sink in the order sent."""
    _, worker, pump, _, sink, _ = connect()
    worker.callRemote(cmd.Incoming, leg="w5070-1", request_uri="sip:1@h", from_uri="<sip:2@h>",
                      to_uri="<sip:1@h>", pai="", authorization="", call_id="c@h",
                      source="127.0.0.1:5090", transport="udp",
                      response_headers=["Via: SIP/2.0/UDP 127.0.0.1:5090", "CSeq: 1 INVITE"])
    worker.callRemote(cmd.Dtmf, leg="w5070-1", digit="1", method="rfc2833")
    worker.callRemote(cmd.Dtmf, leg="w5070-1", digit="2", method="info-relay")
    worker.callRemote(cmd.PlayDone, leg="w5070-1", play_id=4)
    worker.callRemote(cmd.CallState, leg="w5070-1", state="ended", code=487,
                      reason="ring timeout", by="timeout")
    pump.flush()
    assert [e[0] for e in sink.events] == ["workerIncoming", "workerDigit", "workerDigit",
                                          "workerPlayDone", "workerCallState"]
    assert sink.events[0][2]["source"] == "127.0.0.1:5090"
    assert sink.events[2][1] == ("w5070-1", "2", "info-relay")
    assert sink.events[3][1] == ("w5070-1", 4)
    assert sink.events[4][1] == ("w5070-1", "ended", 487, "ring timeout", "timeout")
    assert sink.events[0][2]["response_headers"][1] == "CSeq: 1 INVITE"


def test_worker_stops_when_the_controller_link_is_lost():
    """A worker whose controller went away shuts itself down."""
    controller, _, pump, _, _, lost = connect()
    controller.transport.loseConnection()
    pump.flush()
    assert lost == [True]
