"""SIGTERM to a running ``twistd -n mizu``: the node drains, live calls get ``[sip]
shutdown_grace`` seconds to finish, what is left is ended with cause "shutdown" and billed
to that second, and the process exits; nothing queued is lost."""

from __future__ import annotations

import signal
from decimal import Decimal

import pytest_twisted
from twisted.internet import reactor

from mizu.config import DatabaseConfig
from mizu.store.service import StoreService
from tests.e2e.peers import RtpPeer, free_port, listening, sip_messages, sipp, wait_until
from tests.e2e.test_callback import A_PRICE, B_PRICE, billed, short_prompts
from tests.e2e.test_callback_restart import logged, sleep, start_twistd
from tests.e2e.test_sip import finished

GRACE = 8


@pytest_twisted.ensureDeferred
async def test_sigterm_drains_then_ends_what_is_left_with_cause_shutdown(tmp_path, database,
                                                                          sql):
    """Two bridged callbacks at SIGTERM. The first's B hangs up within the grace: it ends
    as usual. The second is still talking when the grace is over: both its legs end with
    result "shutdown", billed to that second, and its row says so. Meanwhile an incoming
    call is refused 503 and a due row is not claimed (it stays pending for the next
    start). The process exits after the grace; credit falls by exactly the CDR costs."""
    store = StoreService(DatabaseConfig(dsn=database), reactor)
    await store.startService()
    await store.stopService()
    sip_port = free_port(2)
    ports = {name: free_port() for name in ("a1", "a2", "b1", "b2")}
    sounds = short_prompts(tmp_path / "sounds")
    (tmp_path / "mizu.ini").write_text(
        f"[sip]\nlisten = 127.0.0.1:{sip_port}\nworkers = 2\nshutdown_grace = {GRACE}\n"
        "[http]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[console]\nlisten = tcp:0:interface=127.0.0.1\n[console.users]\nadmin = pw\n"
        f"[ivr]\nsounds = {sounds}\n"
        "[callback]\nheartbeat = 1\npoll_interval = 1\nmax_attempts = 1\n")
    (alice,), = sql("INSERT INTO tb_user (username, password, credit)"
                    " VALUES ('alice', 'wonder', 10) RETURNING id")
    sql("INSERT INTO tb_user (username, iscallback) VALUES ('4930555', 6)")
    sql("INSERT INTO tb_user (username, usertype, authip)"
        " VALUES ('carrier', 'trafficsender', '127.0.0.1')")
    sql("INSERT INTO tb_rates (prefix, price, initblock, increment) VALUES"
        " ('4917', %s, 1, 1), ('4420', %s, 1, 1)", (A_PRICE, B_PRICE))
    for prefix, name in (("4917011", "a1"), ("4917022", "a2"), ("44201", "b1"),
                         ("44202", "b2")):
        sql("INSERT INTO tb_routes (prefix, gateway) VALUES (%s, %s)",
            (prefix, f"sip:{{number}}@127.0.0.1:{ports[name]}"))
    media = [RtpPeer.listen() for _ in range(4)]
    traces = {name: tmp_path / f"{name}.log" for name in ports}
    scenarios = {"a1": ("uas_answer.xml",), "a2": ("uas_answer.xml",),
                 "b1": ("uas_answer_bye.xml", "-d", "6000"), "b2": ("uas_answer.xml",)}
    peers = {}
    for (name, port), (_, rtp) in zip(ports.items(), media, strict=True):
        scenario, *args = scenarios[name]
        peers[name] = sipp(scenario, *args, "-key", "rtpport", str(rtp), "-trace_msg",
                           "-message_file", str(traces[name]), port=port, timeout=90)
        await listening(port)

    mizu = start_twistd(tmp_path, database, "mizu.log")
    try:
        await logged(tmp_path, mizu, "mizu.log", "mizu 0.1.0 ready")
        ids = [sql("INSERT INTO tb_callbacks (userid, anum, bnum, source, status)"
                   " VALUES (%s, %s, %s, 'db', 'pending') RETURNING id",
                   (alice, anum, bnum))[0][0]
               for anum, bnum in (("4917011", "4420111"), ("4917022", "4420222"))]

        def row(cbid):
            return sql("SELECT status, reason, attempts FROM tb_callbacks WHERE id = %s",
                       (cbid,))[0]

        await wait_until(lambda: all(row(i)[0] == "bridged" for i in ids), 30, "bridged")
        mizu.send_signal(signal.SIGTERM)
        term = reactor.seconds()
        await logged(tmp_path, mizu, "mizu.log", "waiting up to")
        (queued,), = sql("INSERT INTO tb_callbacks (userid, anum, bnum, source, status)"
                         " VALUES (%s, '4917033', '4420333', 'db', 'pending') RETURNING id",
                         (alice,))
        trace = tmp_path / "refused.log"
        refused = sipp("uac_503.xml", "-s", "4930555", "-trace_msg", "-message_file",
                       str(trace), target=f"127.0.0.1:{sip_port + 1}", timeout=10)
        await finished(refused)  # the scenario expects 503 to the INVITE
        await sleep(1.5)
        assert all(row(i)[0] == "bridged" for i in ids)  # the grace: both still talking
        assert row(queued)[0] == "pending"

        await wait_until(lambda: mizu.poll() is not None, GRACE + 25, "twistd to exit")
        exited = reactor.seconds()
        assert GRACE - 1 <= exited - term < GRACE + 20, exited - term
        for name in ports:
            await finished(peers[name])  # b1 hung up itself; the others got BYE

        first, second = ids
        assert row(first)[:2] == ("completed", "")
        assert row(second)[0] == "completed" and "shutdown" in row(second)[1], row(second)
        assert row(queued) == ("pending", "", 0)  # never claimed: dialled after a restart
        cdrs = sql("SELECT callbackid, leg, result, extract(epoch FROM endtime)::float8,"
                   " billedduration, cost, extract(epoch FROM answertime)::float8"
                   " FROM tb_cdrs WHERE settled ORDER BY id")
        by = {(c[0], c[1]): c for c in cdrs}
        assert sorted(by) == sorted((i, leg) for i in ids for leg in "AB"), cdrs
        assert by[(first, "B")][2] == "normal"
        for leg, price in (("A", A_PRICE), ("B", B_PRICE)):
            cdr = by[(second, leg)]
            assert cdr[2] == "shutdown", cdr
            assert term + GRACE - 1 <= cdr[3] <= exited + 0.5, (cdr, term)
            billed({"endtime": cdr[3], "billedduration": cdr[4], "cost": cdr[5],
                    "answertime": cdr[6]}, price)
        assert sql("SELECT count(*) FROM tb_cdrs WHERE NOT settled")[0][0] == 0
        assert sql("SELECT count(*) FROM tb_reservations")[0][0] == 0
        credit = sql("SELECT credit FROM tb_user WHERE id = %s", (alice,))[0][0]
        assert credit == Decimal(10) - sum(c[5] for c in cdrs)
        assert [m.split("\n", 1)[0] for kind, m in sip_messages(trace)
                if kind == "received" and m.startswith("SIP/2.0 5")] == \
            ["SIP/2.0 503 Shutting down"]
    finally:
        if mizu.poll() is None:
            mizu.kill()
            mizu.wait()
        for peer, _ in media:
            await peer.close()
