"""Crash fault injection on real processes: ``kill -9`` of ``twistd -n mizu`` with a full
queue and bridged calls, ``kill -9`` of one SIP worker process under live calls or with a
call setup in flight, and a hung (SIGSTOPped) worker. The peers are SIPp, the database a
real PostgreSQL; every test checks the tables afterwards:
no request lost or dialled twice, every answered leg with a CDR, the credit decrease equal
to the sum of the CDR costs, no reservation left."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
import pytest_twisted
from twisted.internet import reactor

from mizu.config import DatabaseConfig
from mizu.dispatch.recovery import INTERRUPTED
from mizu.store.service import StoreService
from tests.e2e.peers import (
    RtpPeer,
    free_port,
    port_in_use,
    sip_header,
    sip_messages,
    sipp,
    wait_until,
    worker_capacity,
)
from tests.e2e.test_callback import A_PRICE, B_PRICE, billed, short_prompts, user_of
from tests.e2e.test_callback_restart import alive, children, logged, sleep, start_twistd
from tests.e2e.test_sip import finished

IN_FLIGHT = ("calling_a", "ivr", "calling_b", "bridged")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPACITY = 4  # [sip] max_calls / workers below: the same on the wheel and a built engine


@pytest.fixture(autouse=True)
def importable(monkeypatch):
    """twistd and its workers run in tmp_path: they import this checkout's mizu (and its
    twistd plugin) whatever the installed package points at."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p))


async def provision(tmp_path, database, sql, *, workers, routes, attempts=1):
    """The schema, user alice (credit 10), rates for 49 (A) and 4420 (B), ``routes``
    ({prefix: port}); mizu.ini for ``workers`` workers of ``CAPACITY`` calls each and
    ``attempts`` calls to A per callback.
    Returns (alice's id, the SIP port of worker 0)."""
    store = StoreService(DatabaseConfig(dsn=database), reactor)
    await store.startService()
    await store.stopService()
    assert worker_capacity(CAPACITY) == CAPACITY  # both engines hold 4 calls per worker
    sip_port = free_port(workers)
    sounds = short_prompts(tmp_path / "sounds")
    (tmp_path / "mizu.ini").write_text(
        f"[sip]\nlisten = 127.0.0.1:{sip_port}\nworkers = {workers}\n"
        f"max_calls = {CAPACITY * workers}\nshutdown_grace = 0\n"
        "[http]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[console]\nlisten = tcp:0:interface=127.0.0.1\n[console.users]\nadmin = pw\n"
        f"[ivr]\nsounds = {sounds}\n"
        "[callback]\nheartbeat = 1\nstale_after = 5\npoll_interval = 1\n"
        f"max_attempts = {attempts}\nretry_delay = 3600\n"
        "ring_timeout = 60\n"
        # the fraud guards are not under test: 100 requests of one user within seconds
        "[fraud]\nmax_calls_per_user = 0\ncallbacks_per_hour = 0\nanumber_per_hour = 0\n")
    (alice,), = sql("INSERT INTO tb_user (username, password, credit)"
                    " VALUES ('alice', 'wonder', 10) RETURNING id")
    sql("INSERT INTO tb_rates (prefix, price, initblock, increment) VALUES"
        " ('49', %s, 1, 1), ('4420', %s, 1, 1)", (A_PRICE, B_PRICE))
    for prefix, port in routes.items():
        sql("INSERT INTO tb_routes (prefix, gateway) VALUES (%s, %s)",
            (prefix, f"sip:{{number}}@127.0.0.1:{port}"))
    return alice, sip_port


def uas(tmp_path, scenario, port, calls, *args, rtp=None):
    """A SIPp UAS on ``port`` for ``calls`` calls, tracing to tmp_path/<port>.log."""
    trace = tmp_path / f"uas-{port}.log"
    media = ("-key", "rtpport", str(rtp)) if rtp else ()
    proc = sipp(scenario, "-m", str(calls), "-trace_msg", "-message_file", str(trace),
                *media, *args, port=port, timeout=120)
    return proc, trace


async def ready(proc, port):
    """Wait until the SIPp ``proc`` listens on ``port``; fails with its output if it quit."""
    await wait_until(lambda: port_in_use(port) or proc.done.called, 10, f"SIPp on {port}")
    assert not proc.done.called, proc.output.decode("utf-8", "replace")


def invites(trace) -> dict[str, set[str]]:
    """The Call-IDs of the INVITEs a SIPp UAS received, by Request-URI user (a
    retransmission is the same call)."""
    calls = defaultdict(set)
    for kind, message in sip_messages(trace):
        if kind == "received" and message.startswith("INVITE "):
            calls[user_of(message.split(" ")[1])].add(sip_header(message, "Call-ID"))
    return calls


def cdrs(sql, where="TRUE", args=()):
    columns = ("callbackid", "leg", "result", "answertime", "endtime", "billedduration",
               "cost", "settled")
    select = ", ".join(f"extract(epoch FROM {c})::float8" if c.endswith("time") else c
                       for c in columns)
    rows = sql(f"SELECT {select} FROM tb_cdrs WHERE {where} ORDER BY id", args)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def check_books(sql, alice, credit_before=Decimal(10)):
    """Every CDR settled, the credit decrease equal to their costs, no reservation."""
    rows = cdrs(sql)
    assert all(r["settled"] for r in rows), rows
    credit = sql("SELECT credit FROM tb_user WHERE id = %s", (alice,))[0][0]
    assert credit_before - credit == sum((r["cost"] for r in rows), Decimal(0)), rows
    assert sql("SELECT count(*) FROM tb_reservations")[0][0] == 0
    assert sql("SELECT count(*) FROM tb_callbacks WHERE status IN %s", (IN_FLIGHT,)) == [(0,)]


def statuses(sql, ids):
    return dict(sql("SELECT id, status FROM tb_callbacks WHERE id = ANY(%s)", (list(ids),)))


def callback(sql, alice, anum, bnum, due="0"):
    return sql("INSERT INTO tb_callbacks (userid, anum, bnum, source, status, due)"
               " VALUES (%s, %s, %s, 'db', 'pending', now() + %s * interval '1 second')"
               " RETURNING id", (alice, anum, bnum, due))[0][0]


async def clean_up(twistds=(), pids=(), sipps=(), media=()):
    """After a test, passed or failed: no twistd, orphaned worker, SIPp or RTP socket is
    left behind."""
    for proc in twistds:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in pids:
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)
    for proc in sipps:
        if proc is not None and not proc.done.called:
            proc.kill()
    for peer in media:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_kill_9_with_a_full_queue_and_bridged_calls(tmp_path, database, sql):
    """``kill -9`` of twistd with 2 bridged callbacks (one on each of 2 workers), 2 more
    callbacks ringing A (status calling_a, claimed into the 2 slots left) and 98 rows
    pending (48 due now, waiting for a free slot, 50 due a few seconds later); then a
    restart on the same configuration and database.

    What recovery promises, asserted precisely: the bridged calls end 'failed' with the
    reason 'interrupted...', their A and B CDRs billed up to the last heartbeat (result
    'interrupted'), and are not dialled again. A row claimed while A was still ringing
    (A never answered) is dialled again only while ``attempts < max_attempts``; with
    ``max_attempts = 1`` it has used its attempt, so it ends 'failed' 'interrupted' with
    attempts 1 and its A saw exactly one INVITE. Each of the 98 pending rows is dialled
    exactly once by the restarted mizu (one INVITE per A-number, A busy) and ends
    'failed' 'A busy'. Afterwards no row is in flight, every CDR is settled, the credit
    went down by exactly the sum of the CDR costs, and no reservation is left."""
    ports = {name: free_port() for name in ("answer", "b", "ring", "busy")}
    alice, sip_port = await provision(
        tmp_path, database, sql, workers=2,
        routes={"4916": ports["answer"], "4420": ports["b"], "4918": ports["ring"],
                "4917": ports["busy"]})
    media = [RtpPeer.listen() for _ in range(2)]
    answer, answer_trace = uas(tmp_path, "uas_answer.xml", ports["answer"], 2, rtp=media[0][1])
    b, b_trace = uas(tmp_path, "uas_answer.xml", ports["b"], 2, rtp=media[1][1])
    ring, ring_trace = uas(tmp_path, "uas_ring.xml", ports["ring"], 2)
    for proc, port in ((answer, "answer"), (b, "b"), (ring, "ring")):
        await ready(proc, ports[port])
    first = start_twistd(tmp_path, database, "first.log")
    second = busy = None
    workers: list[int] = []
    try:
        await logged(tmp_path, first, "first.log", "mizu 0.1.0 ready")
        bridged = []
        for anum, bnum in (("4916001", "4420111"), ("4916002", "4420222")):
            bridged.append(callback(sql, alice, anum, bnum))
            await wait_until(lambda: set(statuses(sql, bridged).values()) == {"bridged"}, 20,
                             f"callback {bridged[-1]} bridged")
        # The two 4918 rows take the two slots left (one callback per worker) ...
        ringing = [callback(sql, alice, anum, "4420333") for anum in ("4918001", "4918002")]
        await wait_until(lambda: set(statuses(sql, ringing).values()) == {"calling_a"}, 10,
                         "A of the 4918 rows dialled")
        await wait_until(lambda: len(invites(ring_trace)) == 2, 10, "both 4918 As ringing")
        # ... and then nothing fits: 48 rows due now, 50 due a few seconds later.
        values = ([(f"4917{n:03}", 0) for n in range(48)]
                  + [(f"4917{n:03}", 4) for n in range(100, 150)])
        pending = [r[0] for r in sql(
            "INSERT INTO tb_callbacks (userid, anum, bnum, source, status, due) VALUES "
            + ", ".join(["(%s, %s, '4420333', 'db', 'pending',"
                         " now() + %s * interval '1 second')"] * len(values))
            + " RETURNING id", [v for anum, due in values for v in (alice, anum, due)])]
        queued = ringing + pending
        await sleep(3)  # talk and ring, with heartbeats every second
        assert set(statuses(sql, pending).values()) == {"pending"}  # no room for them
        assert set(statuses(sql, ringing).values()) == {"calling_a"}
        assert set(statuses(sql, bridged).values()) == {"bridged"}
        workers = children(first.pid)
        assert len(workers) == 2, workers
        killed = reactor.seconds()
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        await wait_until(lambda: not any(alive(pid) for pid in workers), 10,
                         f"the orphaned workers {workers} to exit")
        for proc in (answer, b, ring):  # BYE to the bridged legs, CANCEL to the ringing As
            await finished(proc)

        busy, busy_trace = uas(tmp_path, "uas_busy.xml", ports["busy"], len(pending))
        await ready(busy, ports["busy"])
        second = start_twistd(tmp_path, database, "second.log")
        await logged(tmp_path, second, "second.log", "mizu 0.1.0 ready")
        everything = bridged + queued
        await wait_until(lambda: set(statuses(sql, everything).values()) <= {"failed"}, 60,
                         "every callback ended")
        await finished(busy)  # exactly len(pending) calls, each answered 486
        await sleep(1)  # a second dialling of any row would show in its reason below

        rows = {r[0]: r[1:] for r in sql(
            "SELECT id, anum, reason, attempts FROM tb_callbacks WHERE id = ANY(%s)",
            (everything,))}
        assert len(rows) == 102
        for cbid in bridged + ringing:
            assert rows[cbid][1:] == (INTERRUPTED, 1), rows[cbid]
        assert {rows[cbid][1:] for cbid in pending} == {("A busy", 1)}
        # each A-number dialled exactly once, in all
        dialled = invites(busy_trace)
        assert {anum: len(calls) for anum, calls in dialled.items()} == {
            rows[cbid][0]: 1 for cbid in pending}
        assert {k: len(v) for k, v in invites(ring_trace).items()} == {
            "4918001": 1, "4918002": 1}
        assert {k: len(v) for k, v in invites(answer_trace).items()} == {
            "4916001": 1, "4916002": 1}
        assert {k: len(v) for k, v in invites(b_trace).items()} == {
            "4420111": 1, "4420222": 1}

        # the bridged calls: both legs billed up to about the last heartbeat
        legs = cdrs(sql, "callbackid = ANY(%s)", (bridged,))
        assert sorted((r["callbackid"], r["leg"]) for r in legs) == sorted(
            (cbid, leg) for cbid in bridged for leg in "AB"), legs
        for cdr in legs:
            assert cdr["result"] == "interrupted", cdr
            assert killed - 2.5 < cdr["endtime"] <= killed + 0.5, (cdr, killed)
            billed(cdr, A_PRICE if cdr["leg"] == "A" else B_PRICE)
            assert cdr["billedduration"] >= 3, cdr
        # unanswered legs cost nothing; the As that rang at the kill have no answered leg
        others = cdrs(sql, "NOT (callbackid = ANY(%s))", (bridged,))
        assert all(r["answertime"] is None and r["cost"] == 0 for r in others), others
        assert Counter(r["result"] for r in others) == {"busy": len(pending)}, others
        check_books(sql, alice)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == -signal.SIGTERM
    finally:
        await clean_up((first, second), workers, (answer, b, ring, busy),
                       [peer for peer, _ in media])



@pytest_twisted.ensureDeferred
async def test_kill_9_redials_only_the_callback_whose_a_never_answered(tmp_path, database,
                                                                       sql):
    """With ``max_attempts = 2``: at the ``kill -9`` one callback is bridged (A answered,
    attempt 1) and one is ringing its A (never answered, attempt 1). The restarted mizu
    dials the ringing one's A again, once (reason 'resumed after a restart', attempt 2;
    A busy this time, so it ends 'failed' 'A busy'), and never dials the answered one
    again although it has an attempt left: it ends 'failed' 'interrupted', billed up to
    its last heartbeat. The books balance."""
    ports = {name: free_port() for name in ("answer", "b", "ring")}
    alice, _ = await provision(
        tmp_path, database, sql, workers=1, attempts=2,
        routes={"4916": ports["answer"], "4420": ports["b"], "4918": ports["ring"]})
    media = [RtpPeer.listen() for _ in range(2)]
    answer, answer_trace = uas(tmp_path, "uas_answer.xml", ports["answer"], 1, rtp=media[0][1])
    b, b_trace = uas(tmp_path, "uas_answer.xml", ports["b"], 1, rtp=media[1][1])
    ring, ring_trace = uas(tmp_path, "uas_ring.xml", ports["ring"], 1)
    for proc, port in ((answer, "answer"), (b, "b"), (ring, "ring")):
        await ready(proc, ports[port])
    first = start_twistd(tmp_path, database, "first.log")
    second = busy = None
    workers: list[int] = []
    try:
        await logged(tmp_path, first, "first.log", "mizu 0.1.0 ready")
        talked = callback(sql, alice, "4916001", "4420111")
        await wait_until(lambda: statuses(sql, [talked]) == {talked: "bridged"}, 20,
                         "the bridged call")
        rang = callback(sql, alice, "4918001", "4420111")
        await wait_until(lambda: len(invites(ring_trace)) == 1, 10, "A of the other ringing")
        await sleep(2)
        assert statuses(sql, [talked, rang]) == {talked: "bridged", rang: "calling_a"}
        workers = children(first.pid)
        killed = reactor.seconds()
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        await wait_until(lambda: not any(alive(pid) for pid in workers), 10,
                         f"the orphaned workers {workers} to exit")
        for proc in (answer, b, ring):
            await finished(proc)

        busy, busy_trace = uas(tmp_path, "uas_busy.xml", ports["ring"], 1)  # A, this time
        await ready(busy, ports["ring"])
        second = start_twistd(tmp_path, database, "second.log")
        await logged(tmp_path, second, "second.log", "mizu 0.1.0 ready")
        await wait_until(lambda: statuses(sql, [talked, rang]) == {talked: "failed",
                                                                   rang: "failed"}, 15,
                         "both callbacks ended")
        await finished(busy)
        await sleep(1)
        rows = dict((r[0], r[1:]) for r in sql(
            "SELECT id, reason, attempts FROM tb_callbacks WHERE id IN (%s, %s)",
            (talked, rang)))
        assert rows == {talked: (INTERRUPTED, 1), rang: ("A busy", 2)}
        assert "1 callbacks resumed" in (tmp_path / "second.log").read_text()
        assert {k: len(v) for k, v in invites(ring_trace).items()} == {"4918001": 1}
        assert {k: len(v) for k, v in invites(busy_trace).items()} == {"4918001": 1}
        assert {k: len(v) for k, v in invites(answer_trace).items()} == {"4916001": 1}
        legs = cdrs(sql, "callbackid = %s", (talked,))
        assert [(c["leg"], c["result"]) for c in legs] == [("A", "interrupted"),
                                                           ("B", "interrupted")]
        for cdr in legs:
            assert killed - 2.5 < cdr["endtime"] <= killed + 0.5, (cdr, killed)
            billed(cdr, A_PRICE if cdr["leg"] == "A" else B_PRICE)
        assert [(c["leg"], c["result"], c["cost"]) for c in cdrs(
            sql, "callbackid = %s", (rang,))] == [("A", "busy", 0)]
        check_books(sql, alice)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == -signal.SIGTERM
    finally:
        await clean_up((first, second), workers, (answer, b, ring, busy),
                       [peer for peer, _ in media])


def worker_pids(text: str, index: int) -> list[int]:
    """The pids worker ``index`` said Hello with, in order (restarts included)."""
    return [int(pid) for pid in re.findall(rf"sip worker {index} pid=(\d+) port=\d+ capacity",
                                          text)]


def invite_port(trace, user: str) -> int:
    """The port the INVITE for ``user`` came from (its top Via): which worker sent it."""
    (message,) = [m for kind, m in sip_messages(trace) if kind == "received"
                  and m.startswith("INVITE ") and user_of(m.split(" ")[1]) == user]
    return int(re.search(r"SIP/2.0/UDP [^:;]+:(\d+)", sip_header(message, "Via")).group(1))


@pytest_twisted.ensureDeferred
async def test_kill_9_of_one_worker_under_bridged_calls(tmp_path, database, sql):
    """Two workers, a bridged callback X on worker 0 and Y on worker 1; ``kill -9`` of
    worker 0's process. X ends at once: the row 'failed' with a reason naming the worker's
    death, both CDRs carrying it too, billed to the second up to the death. Y goes on:
    still bridged, B's audio still reaching A, and nobody hangs it up until B does, when
    it completes normally. A callback queued while worker 0 is down is placed on worker 1;
    worker 0 is restarted on its port with a new pid and takes the next callback. The books
    balance: credit down by the CDR costs, no reservation left, no row in flight."""
    ports = {name: free_port() for name in ("ax", "bx", "ay", "by", "busy")}
    alice, sip_port = await provision(
        tmp_path, database, sql, workers=2,
        routes={"4916001": ports["ax"], "4420111": ports["bx"], "4916002": ports["ay"],
                "4420222": ports["by"], "4917": ports["busy"]})
    media = {name: RtpPeer.listen() for name in ("ax", "bx", "ay", "by")}
    peers = {name: uas(tmp_path, "uas_answer.xml", ports[name], 1, rtp=media[name][1])
             for name in ("ax", "bx", "ay")}
    peers["by"] = uas(tmp_path, "uas_answer_bye.xml", ports["by"], 1, "-d", "15000",
                      rtp=media["by"][1])
    peers["busy"] = uas(tmp_path, "uas_busy.xml", ports["busy"], 2)
    for name, (proc, _) in peers.items():
        await ready(proc, ports[name])
    for name in ("bx", "by"):
        media[name][0].start_tone()  # B talks; A hears it through the worker's bridge
    twistd = start_twistd(tmp_path, database, "mizu.log")
    log = tmp_path / "mizu.log"
    try:
        await logged(tmp_path, twistd, "mizu.log", "mizu 0.1.0 ready")
        (pid0,), (pid1,) = worker_pids(log.read_text(), 0), worker_pids(log.read_text(), 1)
        assert sorted(children(twistd.pid)) == sorted([pid0, pid1])
        x = callback(sql, alice, "4916001", "4420111")
        await wait_until(lambda: statuses(sql, [x]) == {x: "bridged"}, 20, "X bridged")
        y = callback(sql, alice, "4916002", "4420222")  # the emptier worker: worker 1
        await wait_until(lambda: statuses(sql, [y]) == {y: "bridged"}, 20, "Y bridged")
        await sleep(3)
        ay_rtp = media["ay"][0]
        assert ay_rtp.loud_packets() > 20  # B's tone, bridged to A

        os.kill(pid0, signal.SIGKILL)
        killed = reactor.seconds()
        await logged(tmp_path, twistd, "mizu.log", f"sip worker 0 pid={pid0} ended")
        z = callback(sql, alice, "4917001", "4420333")  # while worker 0 is down
        await wait_until(lambda: set(statuses(sql, [x, z]).values()) <= {"completed", "failed"},
                         10, "X ended and Z dialled")
        (status, reason, attempts), = sql(
            "SELECT status, reason, attempts FROM tb_callbacks WHERE id = %s", (x,))
        assert (status, attempts) == ("failed", 1) and reason.startswith("worker died"), (
            status, reason)
        legs = cdrs(sql, "callbackid = %s", (x,))
        assert [c["leg"] for c in legs] == ["A", "B"], legs
        for cdr in legs:
            assert cdr["result"] == "worker died", cdr
            assert killed - 0.2 < cdr["endtime"] < killed + 1.0, (cdr, killed)  # its death
            billed(cdr, A_PRICE if cdr["leg"] == "A" else B_PRICE)
            assert cdr["billedduration"] >= 3, cdr

        # Y on worker 1 did not notice: still bridged, B's audio still reaching A
        assert statuses(sql, [y]) == {y: "bridged"}
        await sleep(2)
        assert ay_rtp.loud_packets(since=killed + 0.5) > 40
        assert not peers["ay"][0].done.called and not peers["by"][0].done.called

        await wait_until(lambda: len(worker_pids(log.read_text(), 0)) == 2, 20,
                         "worker 0 restarted")
        (_, new0), = [worker_pids(log.read_text(), 0)]
        assert new0 != pid0 and not alive(pid0) and alive(new0) and alive(pid1)
        assert sorted(children(twistd.pid)) == sorted([new0, pid1])
        w = callback(sql, alice, "4917002", "4420333")  # worker 0 is the emptier one again
        await wait_until(lambda: statuses(sql, [w]) == {w: "failed"}, 10, "W dialled")
        await finished(peers["busy"][0])
        busy_trace = peers["busy"][1]
        assert invite_port(busy_trace, "4917001") == sip_port + 1  # Z: the live worker
        assert invite_port(busy_trace, "4917002") == sip_port  # W: the restarted worker 0
        assert dict(sql("SELECT id, reason FROM tb_callbacks WHERE id IN (%s, %s)",
                        (z, w))) == {z: "A busy", w: "A busy"}

        # Y ends when B hangs up (about 15 s after its answer), and only then
        await finished(peers["by"][0])
        await finished(peers["ay"][0])
        await wait_until(lambda: statuses(sql, [y]) == {y: "completed"}, 10, "Y completed")
        b_bye = [at for kind, m, at in sip_messages(peers["by"][1], times=True)
                 if kind == "sent" and m.startswith("BYE ")]
        a_bye = [at for kind, m, at in sip_messages(peers["ay"][1], times=True)
                 if kind == "received" and m.startswith("BYE ")]
        assert len(b_bye) == 1 and len(a_bye) == 1 and a_bye[0] >= b_bye[0] - 0.01
        legs = cdrs(sql, "callbackid = %s", (y,))
        assert [(c["leg"], c["result"]) for c in legs] == [("A", "normal"), ("B", "normal")]
        for cdr in legs:
            billed(cdr, A_PRICE if cdr["leg"] == "A" else B_PRICE)
        assert 14 <= legs[1]["billedduration"] <= 17, legs
        assert invite_port(peers["ay"][1], "4916002") == sip_port + 1
        check_books(sql, alice)
        twistd.send_signal(signal.SIGTERM)
        assert twistd.wait(timeout=30) == -signal.SIGTERM
        # X's far ends got no BYE: the dead worker held their dialogs (see the report)
        assert invite_port(peers["ax"][1], "4916001") == sip_port
    finally:
        await clean_up((twistd,), (), [proc for proc, _ in peers.values()],
                       [peer for peer, _ in media.values()])


@pytest_twisted.ensureDeferred
async def test_kill_9_of_a_worker_with_a_setup_in_flight(tmp_path, database, sql):
    """A worker is stopped (SIGSTOP) and then killed -9 while the controller waits for it
    to take a callback's Originate: the INVITE never left. The request is not lost: it is
    put back without counting the attempt, dialled once on a live worker (A busy) and
    ends 'failed' 'A busy' with attempts 1; the killed worker is restarted."""
    ports = {"busy": free_port()}
    alice, sip_port = await provision(tmp_path, database, sql, workers=2,
                                      routes={"4917": ports["busy"]})
    busy, busy_trace = uas(tmp_path, "uas_busy.xml", ports["busy"], 1)
    await ready(busy, ports["busy"])
    twistd = start_twistd(tmp_path, database, "mizu.log")
    log = tmp_path / "mizu.log"
    pid0 = None
    try:
        await logged(tmp_path, twistd, "mizu.log", "mizu 0.1.0 ready")
        (pid0,) = worker_pids(log.read_text(), 0)
        os.kill(pid0, signal.SIGSTOP)  # alive to the controller, deaf to its commands
        cbid = callback(sql, alice, "4917001", "4420333")  # placed on worker 0 (a tie)
        await logged(tmp_path, twistd, "mizu.log", f"callback {cbid}: calling 4917001")
        await sleep(0.5)
        assert statuses(sql, [cbid]) == {cbid: "calling_a"}
        os.kill(pid0, signal.SIGKILL)
        await logged(tmp_path, twistd, "mizu.log", f"sip worker 0 pid={pid0} ended")
        await wait_until(lambda: statuses(sql, [cbid]) == {cbid: "failed"}, 15,
                         "the callback dialled again")
        (reason, attempts), = sql("SELECT reason, attempts FROM tb_callbacks WHERE id = %s",
                                  (cbid,))
        assert (reason, attempts) == ("A busy", 1)
        await finished(busy)
        assert {k: len(v) for k, v in invites(busy_trace).items()} == {"4917001": 1}
        assert invite_port(busy_trace, "4917001") in (sip_port, sip_port + 1)
        await wait_until(lambda: len(worker_pids(log.read_text(), 0)) == 2, 20,
                         "worker 0 restarted")
        check_books(sql, alice)
        twistd.send_signal(signal.SIGTERM)
        assert twistd.wait(timeout=30) == -signal.SIGTERM
    finally:
        await clean_up((twistd,), (pid0,), (busy,))


@pytest_twisted.ensureDeferred
async def test_a_hung_worker_is_killed_and_its_calls_end(tmp_path, database, sql):
    """A worker holding a bridged callback stops answering (SIGSTOP: a deadlocked pjsua
    looks the same). The controller asks each worker Hello every few seconds; one silent
    for HELLO_TIMEOUT s is killed, so its call ends ('worker died', billed to the second
    up to then) and it is restarted, instead of holding the call and its callback row in
    flight for ever."""
    from mizu.sip.process import HELLO_TIMEOUT, PING_INTERVAL

    ports = {name: free_port() for name in ("ax", "bx")}
    alice, sip_port = await provision(tmp_path, database, sql, workers=2,
                                      routes={"4916": ports["ax"], "4420": ports["bx"]})
    media = {name: RtpPeer.listen() for name in ports}
    peers = {name: uas(tmp_path, "uas_answer.xml", ports[name], 1, rtp=media[name][1])
             for name in ports}
    for name, (proc, _) in peers.items():
        await ready(proc, ports[name])
    twistd = start_twistd(tmp_path, database, "mizu.log")
    log = tmp_path / "mizu.log"
    pid0 = None
    try:
        await logged(tmp_path, twistd, "mizu.log", "mizu 0.1.0 ready")
        (pid0,) = worker_pids(log.read_text(), 0)
        x = callback(sql, alice, "4916001", "4420111")
        await wait_until(lambda: statuses(sql, [x]) == {x: "bridged"}, 20, "X bridged")
        await sleep(2)
        os.kill(pid0, signal.SIGSTOP)
        stopped = reactor.seconds()
        await logged(tmp_path, twistd, "mizu.log", f"sip worker 0 pid={pid0} has not answered",
                     timeout=HELLO_TIMEOUT + 2 * PING_INTERVAL + 5)
        declared = reactor.seconds()
        assert HELLO_TIMEOUT - 1 <= declared - stopped <= HELLO_TIMEOUT + PING_INTERVAL + 2
        await logged(tmp_path, twistd, "mizu.log", f"sip worker 0 pid={pid0} ended")
        assert not alive(pid0)
        await wait_until(lambda: statuses(sql, [x]) != {x: "bridged"}, 10, "X ended")
        (status, reason), = sql("SELECT status, reason FROM tb_callbacks WHERE id = %s", (x,))
        assert status == "failed" and reason.startswith("worker died"), (status, reason)
        legs = cdrs(sql, "callbackid = %s", (x,))
        assert [(c["leg"], c["result"]) for c in legs] == [("A", "worker died"),
                                                           ("B", "worker died")], legs
        for cdr in legs:
            assert declared - 1 < cdr["endtime"] < declared + 1, (cdr, declared)
            billed(cdr, A_PRICE if cdr["leg"] == "A" else B_PRICE)
        await wait_until(lambda: len(worker_pids(log.read_text(), 0)) == 2, 20,
                         "worker 0 restarted")
        check_books(sql, alice)
        twistd.send_signal(signal.SIGTERM)
        assert twistd.wait(timeout=30) == -signal.SIGTERM
    finally:
        await clean_up((twistd,), (pid0,), [proc for proc, _ in peers.values()],
                       [peer for peer, _ in media.values()])
