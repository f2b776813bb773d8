"""SIP capacity of pjsua2 workers, measured against SIPp on loopback.

Usage: python bench/sip_capacity.py [workers]   (default 2)

Prints one line per figure:
  setups_per_second_per_worker  highest SIPp call rate (INVITE, 200, ACK, BYE) that one
                                worker answers for 10 s with no failed call and no crash
  concurrent_calls_per_node     the sum of the workers' real call capacity
  rss_mb_per_worker             resident memory of an idle worker
  idle_cpu_percent_per_worker   CPU of an idle worker (it polls pjsua every 10 ms)
  invite_to_200_ms              p50 and p99 of INVITE -> 200 at 10 calls/s, as SIPp saw it
                                (SIPp reports whole milliseconds in steps of about 4 ms)

RATES=5,10,20 limits the rates tried for the first figure.
"""

import csv
import glob
import os
import shutil
import sys
import tempfile

from twisted.internet import defer, reactor, task
from zope.interface import implementer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mizu.config import SipConfig  # noqa: E402
from mizu.sip.bridge import SipBridge  # noqa: E402
from mizu.telephony import IIncomingCallHandler  # noqa: E402
from tests.e2e.peers import free_port, sipp  # noqa: E402

SCENARIO = os.path.join(os.path.dirname(__file__), "sipp", "uac_call.xml")
TICKS = os.sysconf("SC_CLK_TCK")
RATES = [int(r) for r in os.environ.get("RATES", "5,10,20,30,40,60,80,100,150,200").split(",")]


@implementer(IIncomingCallHandler)
class Answer:
    """Answers every call; SIPp hangs up."""

    def incomingCall(self, leg, invite):
        leg.answer()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def run_sipp(port, *args, cwd):
    os.chdir(cwd)
    proc = sipp(SCENARIO, "-s", "4930555", *args, target=f"127.0.0.1:{port}", timeout=60)
    code, output = await proc.done
    return code, output


async def main(workers: int):
    port = free_port(workers)
    bridge = SipBridge(SipConfig(host="127.0.0.1", port=port, workers=workers,
                                 shutdown_grace=0), reactor)
    bridge.setIncomingHandler(Answer())
    await bridge.startService()
    work = tempfile.mkdtemp(prefix="mizu-bench-")
    try:
        w0 = bridge.workers[0]
        await task.deferLater(reactor, 1.0, lambda: None)
        before = {w.pid: cpu_seconds(w.pid) for w in bridge.workers.values()}
        await task.deferLater(reactor, 5.0, lambda: None)
        idle = max((cpu_seconds(pid) - t) / 5.0 * 100 for pid, t in before.items())
        rss = max(rss_mb(w.pid) for w in bridge.workers.values())

        best = 0
        for rate in RATES:
            pid = w0.pid
            code, output = await run_sipp(w0.port, "-r", str(rate), "-m", str(rate * 10),
                                          "-l", str(rate * 10), cwd=work)
            crashed = w0.pid != pid or bridge.workers[0] is not w0
            if code != 0 or crashed:
                print(f"# at {rate}/s: sipp exit {code}, worker crashed: {crashed}",
                      file=sys.stderr)
                break
            best = rate
            await task.deferLater(reactor, 1.0, lambda: None)
        if bridge.workers[0] is not w0:  # let a crashed worker come back for the last step
            await task.deferLater(reactor, 3.0, lambda: None)

        w = bridge.workers[0]
        code, _ = await run_sipp(w.port, "-r", "10", "-m", "200", "-trace_rtt",
                                 "-rtt_freq", "1", cwd=work)
        times = []
        for path in glob.glob(os.path.join(work, "uac_call_*_rtt.csv")):
            with open(path) as f:
                for row in csv.reader(f, delimiter=";"):
                    try:
                        times.append(float(row[1]))
                    except (IndexError, ValueError):
                        continue
        times.sort()
        capacity = sum(w.capacity for w in bridge.workers.values())
        print(f"setups_per_second_per_worker={best}")
        print(f"concurrent_calls_per_node={capacity} ({workers} workers)")
        print(f"rss_mb_per_worker={rss:.1f}")
        print(f"idle_cpu_percent_per_worker={idle:.1f}")
        if times:
            p50 = times[len(times) // 2]
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"invite_to_200_ms p50={p50:.1f} p99={p99:.1f} (n={len(times)})")
        else:
            print("invite_to_200_ms unavailable (sipp exit {code})")
    finally:
        await bridge.stopService()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2

    def run():
        d = defer.ensureDeferred(main(n))
        d.addErrback(lambda f: f.printTraceback(file=sys.stderr))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
