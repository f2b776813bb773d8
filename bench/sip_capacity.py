"""SIP capacity of both engines side by side: the PyPI wheel and the built pjsua2.

Usage: python bench/sip_capacity.py [--workers 2] [--wheel-python PY] [--built-python PY]
                                    [--build-engine TARBALL] [--only setups|bridged]
                                    [--target 400] [--step 100] [--hold 10] [--sample 10]

Each engine runs in the Python that has it: the wheel in ``--wheel-python`` (default: the
``python3`` on PATH), the built engine in ``--built-python`` (default ``$MIZU_BUILT_PYTHON``,
else /tmp/mizu-engine-venv/bin/python when it exists). With ``--build-engine TARBALL`` a
missing built Python is made first: ``python3 -m venv --system-site-packages`` at that path,
then ``tools/build-engine TARBALL`` for it (seconds when the wheel is cached). An engine
with no Python is reported ``unavailable``. Which engine a Python has is read from its
``pjsua2-python`` version (``2.17+mizu1`` is built); a label that does not match is warned
about and the figures keep the label of the engine that ran.

For each engine, two measurements, each in a process of that engine's Python:

1. ``setups`` (``--one-engine``, in process against SIPp on loopback):
   ``setups_per_second_per_worker`` (highest SIPp call rate, INVITE 200 ACK BYE, one worker
   answers for 10 s with no failed call and no crash; ``RATES=5,10,20`` limits the rates
   tried), ``concurrent_calls_per_node`` (the workers' call capacity), ``rss_mb_per_worker``
   and ``idle_cpu_percent_per_worker`` (idle worker; it polls pjsua every 10 ms),
   ``invite_to_200_ms`` (p50 and p99 at 10 calls/s as SIPp saw it, in steps of ~4 ms).
2. ``bridged`` (bench/bridged_callbacks.py, a whole ``twistd -n mizu`` node): bridged
   callbacks held at once, A and B answered and RTP flowing both ways, ramped up to
   ``--target`` or the node's capacity or the first failure; setup time; RSS and CPU of the
   controller and the workers while holding; RTP checked both ways on ``--sample`` calls;
   then everything hung up and checked back to zero. See that script for each figure.

Prints every figure as ``<engine>_<figure> <value>`` (``wheel_bridged_callbacks 4``,
``built_bridged_callbacks 400``), then a table of both engines side by side. The children's
detail lines (``#``) go to stderr as they come.
"""

import argparse
import csv
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIO = os.path.join(HERE, "sipp", "uac_call.xml")
ENGINES = ("wheel", "built")
DEFAULT_BUILT = "/tmp/mizu-engine-venv/bin/python"


# -- one engine's setups and capacity (runs in that engine's Python) -------------------------
def one_engine(workers: int) -> None:
    """The ``setups`` figures for the pjsua2 of this Python, one ``name value`` a line."""
    sys.path.insert(0, ROOT)
    from twisted.internet import defer, reactor, task
    from zope.interface import implementer

    from mizu.config import SipConfig
    from mizu.sip.bridge import SipBridge
    from mizu.telephony import IIncomingCallHandler
    from tests.e2e.peers import free_port, sipp

    ticks = os.sysconf("SC_CLK_TCK")
    rates = [int(r) for r in
             os.environ.get("RATES", "5,10,20,30,40,60,80,100,150,200").split(",")]

    @implementer(IIncomingCallHandler)
    class Answer:
        """Answers every call; SIPp hangs up."""

        def incomingCall(self, leg, invite):
            leg.answer()

    def cpu_seconds(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mb(pid: int) -> float:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def sleep(seconds):
        return task.deferLater(reactor, seconds, lambda: None)

    async def run_sipp(port, *args, cwd):
        os.chdir(cwd)
        proc = sipp(SCENARIO, "-s", "4930555", *args, target=f"127.0.0.1:{port}", timeout=60)
        return await proc.done

    async def main():
        port = free_port(workers)
        bridge = SipBridge(SipConfig(host="127.0.0.1", port=port, workers=workers,
                                     shutdown_grace=0), reactor)
        bridge.setIncomingHandler(Answer())
        await bridge.startService()
        work = tempfile.mkdtemp(prefix="mizu-bench-")
        try:
            w0 = bridge.workers[0]
            await sleep(1.0)
            before = {w.pid: cpu_seconds(w.pid) for w in bridge.workers.values()}
            await sleep(5.0)
            idle = max((cpu_seconds(pid) - t) / 5.0 * 100 for pid, t in before.items())
            rss = max(rss_mb(w.pid) for w in bridge.workers.values())

            best = 0
            for rate in rates:
                pid = w0.pid
                code, _ = await run_sipp(w0.port, "-r", str(rate), "-m", str(rate * 10),
                                         "-l", str(rate * 10), cwd=work)
                crashed = w0.pid != pid or bridge.workers[0] is not w0
                if code != 0 or crashed:
                    print(f"# at {rate}/s: sipp exit {code}, worker crashed: {crashed}",
                          flush=True)
                    break
                best = rate
                await sleep(1.0)
            if bridge.workers[0] is not w0:  # let a crashed worker come back for the last step
                await sleep(3.0)

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
            print(f"setups_per_second_per_worker {best}")
            print(f"concurrent_calls_per_node {capacity} ({workers} workers)")
            print(f"rss_mb_per_worker {rss:.1f}")
            print(f"idle_cpu_percent_per_worker {idle:.1f}")
            if times:
                p50 = times[len(times) // 2]
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                print(f"invite_to_200_ms p50={p50:.1f} p99={p99:.1f} (n={len(times)})")
            else:
                print(f"invite_to_200_ms unavailable (sipp exit {code})")
            sys.stdout.flush()
        finally:
            await bridge.stopService()
            shutil.rmtree(work, ignore_errors=True)

    def run():
        d = defer.ensureDeferred(main())
        d.addErrback(lambda f: f.printTraceback(file=sys.stderr))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()


# -- both engines (the parent) ----------------------------------------------------------------
def engine_of(python: str) -> str | None:
    """``built`` or ``wheel`` for the pjsua2 that ``python`` imports; None without one."""
    probe = ("import importlib.metadata as m, mizu, pjsua2;"
             " print(m.version('pjsua2-python'))")
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                             timeout=60, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return "built" if "+" in out.stdout.strip() else "wheel"


def build(python: str, tarball: str) -> None:
    """A venv at ``python``'s folder with the built engine (tools/build-engine)."""
    venv = os.path.dirname(os.path.dirname(python))
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                       check=True)
    subprocess.run([os.path.join(ROOT, "tools", "build-engine"), tarball], check=True,
                   env=dict(os.environ, PYTHON=python))


def child(python: str, argv: list[str], label: str, figures: dict) -> float:
    """Run ``argv`` under ``python``; its figures (``name value``) into ``figures``, its
    ``#`` lines to stderr as they come; returns the seconds it took."""
    began = time.monotonic()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.Popen([python, *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env=env)
    for line in proc.stdout:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            print(f"{label}: {line}", file=sys.stderr, flush=True)
            continue
        name, _, value = line.partition(" ")
        for prefix in ENGINES:
            name = name.removeprefix(f"{prefix}_")
        figures[name] = value
        print(f"{label}_{name} {value}", flush=True)
    code = proc.wait()
    if code:
        print(f"{label}: # {os.path.basename(argv[0])} exited with {code}", file=sys.stderr,
              flush=True)
        figures.setdefault("error", f"{os.path.basename(argv[0])} exit {code}")
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--wheel-python", default=shutil.which("python3") or sys.executable)
    parser.add_argument("--built-python", default=os.environ.get("MIZU_BUILT_PYTHON")
                        or DEFAULT_BUILT)
    parser.add_argument("--build-engine", metavar="TARBALL",
                        help="build the engine into --built-python if it lacks it")
    parser.add_argument("--only", choices=("setups", "bridged"))
    parser.add_argument("--target", type=int, default=400)
    parser.add_argument("--step", type=int, default=100)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--sample", type=int, default=10)
    parser.add_argument("--one-engine", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_engine:
        one_engine(args.workers)
        return 0

    if args.build_engine and engine_of(args.built_python) != "built":
        build(args.built_python, args.build_engine)
    pythons = {"wheel": args.wheel_python, "built": args.built_python}
    results: dict[str, dict] = {}
    for label, python in pythons.items():
        found = engine_of(python) if python and os.path.exists(python) else None
        if found is None:
            print(f"{label}_engine unavailable (no mizu with pjsua2 in {python})", flush=True)
            continue
        if found != label:
            print(f"# {python} has the {found} engine, not the {label} one", file=sys.stderr)
            if found in results or found in pythons and pythons[found] != python:
                continue
            label = found
        figures = results[label] = {"python": python}
        print(f"{label}_python {python}", flush=True)
        if args.only != "bridged":
            took = child(python, [__file__, "--one-engine", "--workers", str(args.workers)],
                         label, figures)
            print(f"{label}_setups_run_seconds {took:.0f}", flush=True)
        if args.only != "setups":
            took = child(python, [os.path.join(HERE, "bridged_callbacks.py"),
                                  "--prefix", label, "--workers", str(args.workers),
                                  "--target", str(args.target), "--step", str(args.step),
                                  "--hold", str(args.hold), "--sample", str(args.sample)],
                         label, figures)
            print(f"{label}_bridged_run_seconds {took:.0f}", flush=True)

    names = list(dict.fromkeys(n for f in results.values() for n in f))
    if names:
        width = max(len(n) for n in names)
        print(f"\n{'figure':<{width}}  " + "  |  ".join(f"{e:<24}" for e in ENGINES))
        for name in names:
            cells = [results.get(e, {}).get(name, "unavailable" if e not in results else "-")
                     for e in ENGINES]
            print(f"{name:<{width}}  " + "  |  ".join(f"{c:<24}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
