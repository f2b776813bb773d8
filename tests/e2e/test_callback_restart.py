"""``kill -9`` of a running ``twistd -n mizu`` in the middle of a bridged callback, and the
restart on the same configuration and database: what a crash leaves is settled."""

from __future__ import annotations

import os
import signal
import subprocess
from decimal import Decimal

import pytest_twisted
from twisted.internet import reactor, task

from mizu.config import DatabaseConfig
from mizu.store.service import StoreService
from tests.e2e.peers import RtpPeer, free_port, listening, sip_messages, sipp, wait_until
from tests.e2e.test_callback import A_PRICE, B_PRICE, billed, invite, short_prompts, user_of
from tests.e2e.test_sip import finished
from tests.e2e.test_twistd import TWISTD


def start_twistd(tmp_path, database, log_name):
    """``twistd -n mizu`` on tmp_path/mizu.ini and the test database; output in log_name."""
    with open(tmp_path / log_name, "wb") as log:  # the child keeps its own copy
        return subprocess.Popen([*TWISTD, "-n", "--pidfile=", "mizu", "--config",
                                 str(tmp_path / "mizu.ini"), "--db", database,
                                 "--datadir", str(tmp_path / "var")],
                                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)


async def logged(tmp_path, proc, log_name, text, timeout=60.0):
    """Wait until ``text`` is in the log; fails if twistd exits first."""
    def seen():
        assert proc.poll() is None, (tmp_path / log_name).read_text()
        return text in (tmp_path / log_name).read_text()

    await wait_until(seen, timeout, f"{text!r} in {log_name}")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[1]) == pid and fields[0] not in "ZX":
                kids.append(int(entry))
    return kids


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in "ZX"


async def sleep(seconds: float):
    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_kill_9_mid_call_then_restart_settles_the_interrupted_call(tmp_path, database,
                                                                          sql):
    """A bridged callback when twistd is killed -9: its workers exit with it (freeing the
    SIP port; the far ends get BYE). Restarted on the same config, mizu ends the callback
    'failed' with reason 'interrupted...', bills its A and B legs up to about the last
    heartbeat (result 'interrupted'), charges exactly those costs, leaves no reservation, and
    dials the two rows that were pending (due later) at the crash."""
    store = StoreService(DatabaseConfig(dsn=database), reactor)
    await store.startService()  # the schema, so that the test can provision before start
    await store.stopService()
    sip_port, port_a, port_b, port_p1, port_p2 = (free_port() for _ in range(5))
    sounds = short_prompts(tmp_path / "sounds")
    (tmp_path / "mizu.ini").write_text(
        f"[sip]\nlisten = 127.0.0.1:{sip_port}\nworkers = 1\nshutdown_grace = 0\n"
        "[http]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[console]\nlisten = tcp:0:interface=127.0.0.1\n[console.users]\nadmin = pw\n"
        f"[ivr]\nsounds = {sounds}\n"
        "[callback]\nheartbeat = 1\nstale_after = 5\npoll_interval = 1\nmax_attempts = 1\n")
    (alice,), = sql("INSERT INTO tb_user (username, password, credit)"
                    " VALUES ('alice', 'wonder', 10) RETURNING id")
    sql("INSERT INTO tb_rates (prefix, price, initblock, increment) VALUES"
        " ('4917', %s, 1, 1), ('4420', %s, 1, 1)", (A_PRICE, B_PRICE))
    for prefix, port in (("4917011", port_a), ("4420", port_b), ("4917022", port_p1),
                         ("4917033", port_p2)):
        sql("INSERT INTO tb_routes (prefix, gateway) VALUES (%s, %s)",
            (prefix, f"sip:{{number}}@127.0.0.1:{port}"))
    media = [RtpPeer.listen() for _ in range(2)]
    a_trace, b_trace = tmp_path / "a.log", tmp_path / "b.log"
    a = sipp("uas_answer.xml", "-key", "rtpport", str(media[0][1]), "-trace_msg",
             "-message_file", str(a_trace), port=port_a, timeout=90)
    b = sipp("uas_answer.xml", "-key", "rtpport", str(media[1][1]), "-trace_msg",
             "-message_file", str(b_trace), port=port_b, timeout=90)
    await listening(port_a)
    await listening(port_b)

    first = start_twistd(tmp_path, database, "first.log")
    second = None
    workers: list[int] = []
    try:
        await logged(tmp_path, first, "first.log", "mizu 0.1.0 ready")
        (cbid,), = sql("INSERT INTO tb_callbacks (userid, anum, bnum, source, status)"
                       " VALUES (%s, '4917011', '4420111', 'db', 'pending') RETURNING id",
                       (alice,))

        def status():
            return sql("SELECT status FROM tb_callbacks WHERE id = %s", (cbid,))[0][0]

        await wait_until(lambda: status() == "bridged", 20, "the bridged call")
        later = [sql("INSERT INTO tb_callbacks (userid, anum, bnum, source, status, due)"
                     " VALUES (%s, %s, '4420111', 'db', 'pending',"
                     " now() + interval '8 seconds') RETURNING id", (alice, anum))[0][0]
                 for anum in ("4917022", "4917033")]
        workers = children(first.pid)
        assert len(workers) == 1, workers  # one pjsua2 worker, no embedded PostgreSQL
        await sleep(3)  # talk, with heartbeats every second
        killed = reactor.seconds()
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        # The worker notices its controller is gone, hangs its calls up and exits.
        await wait_until(lambda: not any(alive(pid) for pid in workers), 10,
                         f"the orphaned worker(s) {workers} to exit")
        await finished(a)  # BYE from the worker going down
        await finished(b)
        assert status() == "bridged"  # nobody settled it yet

        p1 = sipp("uas_busy.xml", port=port_p1, timeout=60)
        p2 = sipp("uas_busy.xml", port=port_p2, timeout=60)
        await listening(port_p1)
        await listening(port_p2)
        second = start_twistd(tmp_path, database, "second.log")
        await logged(tmp_path, second, "second.log", "mizu 0.1.0 ready")
        restarted = reactor.seconds()
        await wait_until(lambda: status() == "failed", 10, "the interrupted callback settled")
        (reason, attempts), = sql("SELECT reason, attempts FROM tb_callbacks WHERE id = %s",
                                  (cbid,))
        assert reason.startswith("interrupted"), reason
        assert attempts == 1  # not dialled again
        rows = sql("SELECT leg, result, extract(epoch FROM answertime)::float8,"
                   " extract(epoch FROM endtime)::float8, billedduration, cost"
                   " FROM tb_cdrs WHERE callbackid = %s ORDER BY leg", (cbid,))
        legs = {r[0]: dict(zip(("leg", "result", "answertime", "endtime", "billedduration",
                                "cost"), r, strict=True)) for r in rows}
        assert sorted(legs) == ["A", "B"], rows
        for leg, price in (("A", A_PRICE), ("B", B_PRICE)):
            cdr = legs[leg]
            assert cdr["result"] == "interrupted", cdr
            # billed up to the last heartbeat: at most a beat (and a little) before the kill
            assert killed - 2.5 < cdr["endtime"] <= killed + 0.5, (cdr, killed)
            billed(cdr, price)
        assert legs["B"]["billedduration"] >= 3
        assert legs["A"]["billedduration"] > legs["B"]["billedduration"]
        credit = sql("SELECT credit FROM tb_user WHERE id = %s", (alice,))[0][0]
        assert credit == Decimal(10) - legs["A"]["cost"] - legs["B"]["cost"]
        assert sql("SELECT count(*) FROM tb_reservations")[0][0] == 0
        assert len([m for kind, m in sip_messages(a_trace)
                    if kind == "received" and m.startswith("INVITE ")]) == 1
        assert user_of(invite(b_trace).split(" ")[1]) == "4420111"

        # the rows pending at the crash are dialled by the restarted mizu (A is busy)
        await finished(p1)
        await finished(p2)
        for row in later:
            await wait_until(lambda row=row: sql("SELECT status FROM tb_callbacks WHERE"
                                                 " id = %s", (row,))[0][0] == "failed",
                             10, f"callback {row} dialled")
        done = sql("SELECT reason, attempts, extract(epoch FROM updated)::float8"
                   " FROM tb_callbacks WHERE id = ANY(%s) ORDER BY id", (later,))
        assert [(r[0], r[1]) for r in done] == [("A busy", 1), ("A busy", 1)]
        assert all(r[2] >= restarted - 1 for r in done)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == -signal.SIGTERM
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)  # an orphan the test reported above
        for peer, _ in media:
            await peer.close()
