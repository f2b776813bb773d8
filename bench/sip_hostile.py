"""Hostile SIP input against one pjsua2 worker, measured on loopback.

Usage: python bench/sip_hostile.py [count] [rate] [seed] [tcp_share]
       (defaults: 2000 messages, 100 messages/s, the test's seed, 0.25 of them over TCP)

Starts a SIP bridge with one worker like bench/sip_capacity.py (every incoming call is
refused 404 by the handler, as for an unknown number), sends ``count`` malformed or mutated
messages from tests/hostile/test_sip.py's generator at ``rate`` per second over UDP and
TCP, and prints one line: messages sent, responses by class, worker restarts, seconds down.
ASCII_ONLY=1 leaves out every message with a byte above 0x7f (to measure what else kills a
worker while one known crash, a non-UTF-8 header in an INVITE without SDP, is not fixed).
With EXPLAIN=1 it also prints, per crash, the kinds of the messages sent in the 0.5 s
before it, and the worker's last complaint.
"""

import os
import sys

from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from zope.interface import implementer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mizu.config import SipConfig  # noqa: E402
from mizu.sip.bridge import SipBridge  # noqa: E402
from mizu.telephony import IIncomingCallHandler  # noqa: E402
from tests.e2e.peers import free_port  # noqa: E402
from tests.hostile.test_sip import SEED, TCP_SHARE, hammer, messages  # noqa: E402


@implementer(IIncomingCallHandler)
class Refuse:
    """Refuses every call 404; counts how many got this far."""

    def __init__(self):
        self.calls = 0

    def incomingCall(self, leg, invite):
        self.calls += 1
        leg.reject(404, "Not Found").addErrback(lambda f: None)


async def main(count: int, rate: float, seed: int, tcp_share: float):
    port = free_port()
    bridge = SipBridge(SipConfig(host="127.0.0.1", port=port, workers=1, shutdown_grace=0),
                       reactor)
    handler = Refuse()
    bridge.setIncomingHandler(handler)
    complaints = []

    def observe(event):
        if "sip worker" in str(event.get("log_format", "")) and "line" in event:
            complaints.append((reactor.seconds(), event["line"]))

    globalLogPublisher.addObserver(observe)
    await bridge.startService()
    try:
        batch = messages(seed, count, tcp_share)
        if os.environ.get("ASCII_ONLY"):
            batch = [m for m in messages(seed, count * 2, tcp_share) if m[2].isascii()][:count]
        run = await hammer(bridge, port, batch, rate)
        print(f"{run.line()} calls_handed_on={handler.calls}")
        if os.environ.get("EXPLAIN"):
            for down in run.crashes:
                near = [i for t, i in run.sent_at if down - 0.5 <= t <= down]
                kinds = [f"{i}:{batch[i][0]}/{batch[i][1]}" for i in near]
                last = [line for t, line in complaints if down - 1 <= t <= down + 1]
                print(f"crash at +{down - run.sent_at[0][0]:.2f} s after: {' '.join(kinds)}")
                for line in last[-5:]:
                    print(f"    {line}")
        await task.deferLater(reactor, 1.0, lambda: None)
    finally:
        globalLogPublisher.removeObserver(observe)
        await bridge.stopService()


if __name__ == "__main__":
    args = sys.argv[1:]
    count = int(args[0]) if len(args) > 0 else 2000
    rate = float(args[1]) if len(args) > 1 else 100.0
    seed = int(args[2]) if len(args) > 2 else SEED
    share = float(args[3]) if len(args) > 3 else TCP_SHARE

    def run():
        d = defer.ensureDeferred(main(count, rate, seed, share))
        d.addErrback(lambda f: f.printTraceback(file=sys.stderr))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
