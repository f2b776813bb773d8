"""The SIP engine a worker runs on: what it reports on either engine, and what only the
engine built from pjproject's source (``tools/build-engine``) takes: hundreds of held
calls, 300 INVITEs a second and hostile input, all without a worker restart.

The tests of the built engine are skipped on the PyPI wheel (4 calls per worker); run
them in a Python where ``tools/build-engine`` installed the engine.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from mizu.dispatch.inbound import Inbound
from tests.e2e import test_sip
from tests.e2e.peers import engine_max_calls, free_port, sipp, wait_until
from tests.hostile.test_sip import SEED, RecordingCore, hammer, messages, request, sdp

mizu = test_sip.mizu  # the shared fixture: one worker, access number 4930555

built_engine = pytest.mark.skipif(
    engine_max_calls() <= 4,
    reason=f"the installed pjsua2 is the PyPI wheel ({engine_max_calls()} calls per "
           "worker); these need the engine built by tools/build-engine")

# Run in a process of its own: an Engine (one pjsua2 Endpoint) under a low file limit.
_LIMITED_ENGINE = """
import json, resource, sys
soft, hard = int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, soft if sys.argv[3] == "fixed" else hard))
from mizu.sip.worker import Engine
engine = Engine("127.0.0.1", int(sys.argv[1]), "", 1000, 0)
print(json.dumps({"capacity": engine.capacity, "file_limit": engine.file_limit,
                  "engine": engine.engine, "ioqueue": engine.ioqueue,
                  "incoming_rate": engine.limits.incoming_rate}))
engine.shutdown()
"""


def limited_engine(file_limit: int, hard: str = "fixed") -> subprocess.CompletedProcess:
    """An Engine started with a soft open-file limit of ``file_limit``; the hard limit the
    same (``fixed``) or left as it is (``keep``)."""
    return subprocess.run([sys.executable, "-c", _LIMITED_ENGINE, str(free_port()),
                           str(file_limit), hard], capture_output=True, text=True, timeout=60)


def sipp_counts(output: str) -> dict:
    """SIPp's closing totals: successful and failed calls, retransmissions (all messages
    of its last screen)."""
    counts = {}
    for name, key in (("Successful call", "ok"), ("Failed call", "failed")):
        found = re.findall(rf"{name}\s+\|\s+\d+\s+\|\s+(\d+)", output)
        counts[key] = int(found[-1]) if found else -1
    screen = output.rsplit("Messages  Retrans", 1)[-1].split("Test Terminated", 1)[0]
    counts["retransmissions"] = sum(int(m) for m in re.findall(
        r"(?m)^\s*\S+ (?:-+>|<-+)\s+(?:E-RTD\d\s+)?\d+\s+(\d+)", screen))
    return counts


def rss_mb(pid: int) -> float:
    """A process's resident memory in MB."""
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def test_a_worker_names_its_engine_and_fits_its_calls_to_its_file_limit():
    """With an open-file limit of 100 a worker takes at most (100 - 64) / 2 = 18 calls
    (fewer on an engine that holds fewer); it names its engine and ioqueue."""
    ran = limited_engine(100)
    assert ran.returncode == 0, ran.stderr
    info = json.loads(ran.stdout.strip().splitlines()[-1])
    assert info["file_limit"] == 100
    assert info["capacity"] == min(18, engine_max_calls())
    if engine_max_calls() <= 4:
        assert info["engine"].startswith("wheel-") and info["ioqueue"].startswith("select")
        assert info["incoming_rate"] == 25
    else:
        assert re.fullmatch(r"pjproject-[\d.]+\+mizu\d+", info["engine"]), info
        assert info["ioqueue"].startswith("epoll") and info["incoming_rate"] >= 300


def test_a_file_limit_too_low_for_one_call_stops_the_worker_with_the_reason():
    """64 open files leave none for a call: the worker does not start, and says so."""
    ran = limited_engine(64)
    assert ran.returncode != 0
    assert "open-file limit (64) leaves no room for a call: raise it to at least 2064" in (
        ran.stderr)


def test_the_file_limit_is_raised_towards_the_hard_limit():
    """A worker started with a soft limit of 256 raises it to the hard limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard open-file limit here is {hard}")
    ran = limited_engine(256, hard="keep")
    assert ran.returncode == 0, ran.stderr
    info = json.loads(ran.stdout.strip().splitlines()[-1])
    expected = hard if hard != resource.RLIM_INFINITY else 2064
    assert info["file_limit"] == expected


def status_of_worker(root) -> str:
    [line] = [w for w in root.status_lines() if w.startswith("sip worker 0 ")]
    return line


async def pause(seconds: float):
    await task.deferLater(reactor, seconds, lambda: None)


@built_engine
@pytest_twisted.ensureDeferred
async def test_200_calling_card_callers_are_held_on_one_worker(tmp_path, database, sql):
    """200 callers of a calling-card number (a traffic sender's, answered into the IVR,
    which asks for their PIN) are held at once on one worker: all answered, none refused,
    the same worker alive throughout; status counts them."""
    extra = "[ivr]\nfirst_digit_timeout = 60\ninter_digit_timeout = 10\nmax_ivr_time = 120\n"
    root = await test_sip.boot(tmp_path, database, sql, extra=extra)
    try:
        (campaign,), = sql("INSERT INTO tb_ccampaigns (name, ivrscript)"
                           " VALUES ('card', 'callingcard') RETURNING id")
        sql("INSERT INTO tb_user (username, ivrid) VALUES ('4930777', %s)", (campaign,))
        sql("INSERT INTO tb_user (username, usertype, authip)"
            " VALUES ('carrier', 'trafficsender', '127.0.0.1')")
        await root.reload()
        root.sip.incoming_handler.core = Inbound(root.getServiceNamed("dispatcher"))
        worker = root.sip.workers[0]
        pid = worker.pid
        assert worker.capacity >= 200, status_of_worker(root)
        peak = []
        watch = task.LoopingCall(lambda: peak.append(
            sum(1 for leg in root.sip.legs.values() if leg.state == "answered")))
        watch.start(0.1)
        calls = sipp("uac_hold.xml", "-s", "4930777", "-m", "200", "-l", "200", "-r", "50",
                     "-d", "8000", target=f"127.0.0.1:{root.sip_port}", timeout=60)
        await wait_until(lambda: peak and peak[-1] == 200, timeout=30,
                         what="200 calls up at once")
        line = status_of_worker(root)
        assert f" calls=200/{worker.capacity} engine=pjproject-" in line, line
        print(f"\n200 held calls: worker RSS {rss_mb(pid):.0f} MB")
        code, output = await calls.done
        watch.stop()
        counts = sipp_counts(output)
        print(f"200 held calls: {counts}")
        assert code == 0 and counts["ok"] == 200 and counts["failed"] == 0, output[-3000:]
        assert max(peak) == 200
        assert worker.pid == pid and worker.alive
        await wait_until(lambda: not root.sip.legs, what="every call's end")
    finally:
        await root.stopService()


@built_engine
@pytest_twisted.ensureDeferred
async def test_300_invites_a_second_for_10_seconds_are_all_answered(mizu, sql):
    """3,000 INVITEs at 300/s from a traffic sender to an answering number, each held
    for a second: every one answered and ended, no refusal, no worker restart."""
    sql("INSERT INTO tb_user (username, usertype, authip)"
        " VALUES ('carrier', 'trafficsender', '127.0.0.1')")
    pid = mizu.sip.workers[0].pid
    began = reactor.seconds()
    calls = sipp("uac_hold.xml", "-s", "4930555", "-m", "3000", "-l", "1000", "-r", "300",
                 "-d", "1000", target=f"127.0.0.1:{mizu.sip_port}", timeout=60)
    code, output = await calls.done
    took = reactor.seconds() - began
    counts = sipp_counts(output)
    print(f"\n300/s for 10 s: {counts} in {took:.1f} s, worker RSS "
          f"{rss_mb(pid):.0f} MB")
    assert code == 0 and counts["ok"] == 3000 and counts["failed"] == 0, output[-3000:]
    assert took < 20, took  # the rate held
    assert len(mizu.core.calls) == 3000
    assert mizu.sip.workers[0].pid == pid and mizu.sip.workers[0].alive
    # A 200 whose ACK came too late is resent for up to 32 s (RFC 3261 timer H).
    await wait_until(lambda: not mizu.sip.legs, timeout=40, what="every call's end")


@built_engine
@pytest.mark.parametrize("transport,count,tcp_share", [("udp", 2000, 0.0), ("tcp", 500, 1.0)])
@pytest_twisted.ensureDeferred
async def test_hostile_messages_never_restart_the_built_engine(mizu, transport, count,
                                                               tcp_share):
    """The hostile batch of tests/hostile/test_sip at 100/s, over UDP and then over TCP on a new
    connection each: the built engine is never replaced (the wheel aborts over TCP)."""
    core = RecordingCore()
    mizu.sip.incoming_handler.core = core
    pid = mizu.sip.workers[0].pid
    run = await hammer(mizu.sip, mizu.sip_port, messages(SEED, count, tcp_share), 100)
    print(f"\nhostile {transport} on the built engine: {run.line()}")
    assert run.sent == count and run.outcomes["4xx"] > count // 20, run.line()
    assert run.restarts == 0 and run.seconds_down == 0, run.line()
    assert mizu.sip.workers[0].pid == pid and core.calls == []
    await wait_until(lambda: not mizu.sip.legs, timeout=15, what="every hostile leg's end")
    await test_sip.finished(sipp("uac_404.xml", "-s", "999",
                                 target=f"127.0.0.1:{mizu.sip_port}"))


@built_engine
@pytest_twisted.ensureDeferred
async def test_offers_of_16_audio_streams_are_refused_without_a_restart(mizu):
    """200 INVITEs offering 16 audio streams each, at 50/s (the wheel aborted on its
    third): every one refused 488, the worker the same."""
    import random

    rng = random.Random(16)
    batch = []
    for n in range(200):
        msg = request(rng, n, "UDP")
        msg.body = sdp(16)
        batch.append(("many_streams", "UDP", bytes(msg)))
    pid = mizu.sip.workers[0].pid
    run = await hammer(mizu.sip, mizu.sip_port, batch, 50)
    assert run.outcomes == {"4xx": 200}, run.line()
    assert run.restarts == 0 and mizu.sip.workers[0].pid == pid
    assert mizu.core.calls == []
