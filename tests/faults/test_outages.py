"""Outages of what mizu depends on, with real processes: PostgreSQL restarted under load and
a bridged call, the SMSC killed in a burst of texts, the embedded database's disk full.

After each fault the tables must say: no request lost or half-stored, every answered leg
with a CDR, the credit decreased by exactly the CDR costs, no reservation left open.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
from decimal import Decimal

import psycopg2
import pytest_twisted
import treq
from twisted.internet import defer, reactor, task, threads

from mizu import __version__
from mizu.config import DatabaseConfig
from mizu.store.service import StoreService
from tests.e2e.peers import RtpPeer, free_port, listening, sip_messages, sipp, wait_until
from tests.e2e.test_callback import A_PRICE, B_PRICE, billed, short_prompts
from tests.e2e.test_callback_restart import logged
from tests.e2e.test_sip import finished
from tests.e2e.test_twistd import TWISTD
from tests.running import running_mizu
from tests.sms.smsc import Smsc, SmscError, gsm_hex
from tests.telnetclient import TelnetSession

A_NUMBER, B_NUMBER = "4917011", "4420111"
LIMITS = ("address_rate = 1000\naddress_burst = 1000\nuser_rate = 1000\n"
          "user_burst = 1000\n")
NO_FRAUD_LIMITS = "[fraud]\ncallbacks_per_hour = 0\nanumber_per_hour = 0\ndaily_spend = 0\n"


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_twistd(tmp_path, dsn, log_name):
    """``twistd -n mizu`` on tmp_path/mizu.ini and ``dsn``, run from tmp_path; this
    checkout first on the path (the installed mizu may point elsewhere)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    with open(tmp_path / log_name, "wb") as log:  # the child keeps its own copy
        return subprocess.Popen([*TWISTD, "-n", "--pidfile=", "mizu", "--config",
                                 str(tmp_path / "mizu.ini"), "--db", dsn,
                                 "--datadir", str(tmp_path / "var")],
                                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)


def query(dsn, statement, args=None):
    """One statement on a connection of its own (the server may have been restarted)."""
    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


async def sleep(seconds: float):
    await task.deferLater(reactor, seconds, lambda: None)


def when_done(proc) -> list[float]:
    """A list that receives the reactor time at which a SIPp run ended."""
    at: list[float] = []
    proc.done.addBoth(lambda r: at.append(reactor.seconds()) or r)
    return at


def check_money(dsn, userid, start_credit: Decimal):
    """The credit is the start credit less exactly the CDR costs; nothing open is left."""
    (credit, spent), = query(dsn, "SELECT credit, (SELECT coalesce(sum(cost), 0) FROM tb_cdrs"
                                  " WHERE userid = u.id) FROM tb_user u WHERE id = %s",
                             (userid,))
    assert credit == start_credit - spent, (credit, start_credit, spent)
    assert query(dsn, "SELECT count(*) FROM tb_reservations")[0][0] == 0
    assert query(dsn, "SELECT count(*) FROM tb_cdrs WHERE NOT settled")[0][0] == 0


class Stream:
    """HTTP callback requests at a steady rate, alternating the JSON API (with and without
    an Idempotency-Key) and ``/mvapireq/``; each with an A-number of its own, so that every
    stored row names the request it came from. Requests are due in an hour (callbackdelay),
    so none is dialled."""

    def __init__(self, port: int, rate: float = 20.0):
        self.base = f"http://127.0.0.1:{port}"
        self.rate = rate
        self.sent: list[dict] = []
        self._numbers = itertools.count(1)
        self._loop = task.LoopingCall(self.one)
        self._running: list[defer.Deferred] = []

    def start(self):
        self._loop.start(1 / self.rate)

    async def stop(self):
        self._loop.stop()
        await defer.DeferredList(self._running)

    def one(self, kind: str | None = None, anum: str | None = None, key: str | None = None):
        n = next(self._numbers)
        kind = kind or ("json-key", "mvapi", "json", "mvapi")[n % 4]
        entry = {"n": n, "kind": kind, "anum": anum or f"4917{n:06d}", "at": reactor.seconds(),
                 "code": None, "body": None, "error": None}
        if kind == "json-key":
            entry["key"] = key or f"k-{n}"
        self.sent.append(entry)
        d = defer.ensureDeferred(self._send(entry))
        self._running.append(d)
        return d

    async def _send(self, entry):
        try:
            if entry["kind"] == "mvapi":
                response = await treq.get(f"{self.base}/mvapireq/", params={
                    "apientry": "callback", "authid": "alice", "authpwd": "wonder",
                    "anum": entry["anum"]}, timeout=15)
            else:
                headers = {"Authorization": "Basic " + base64.b64encode(b"alice:wonder")
                           .decode(), "Content-Type": "application/json"}
                if "key" in entry:
                    headers["Idempotency-Key"] = entry["key"]
                response = await treq.post(f"{self.base}/api/v1/callbacks",
                                           data=json.dumps({"anum": entry["anum"]}).encode(),
                                           headers=headers, timeout=15)
            entry["code"] = response.code
            entry["body"] = (await response.text()).strip()
        except Exception as e:  # a refused or dropped connection is a finding too
            entry["error"] = repr(e)
        entry["done"] = reactor.seconds()
        return entry

    def stored_id(self, entry) -> int | None:
        """The id a successful answer gave, None for a refusal."""
        if entry["kind"] == "mvapi" and entry["code"] == 200:
            assert entry["body"].startswith("OK: "), entry
            return int(entry["body"][4:])
        if entry["kind"] != "mvapi" and entry["code"] == 202:
            return json.loads(entry["body"])["id"]
        return None


def check_http_answers(stream: Stream, dsn):
    """Only success or 503 with a reason naming the database; each answered id stored with
    its A-number, and no row stored for a request that was refused."""
    assert all(e["error"] is None for e in stream.sent), [e for e in stream.sent if e["error"]]
    codes = {e["code"] for e in stream.sent}
    assert codes <= {200, 202, 503}, [e for e in stream.sent if e["code"] not in (200, 202, 503)]
    for e in stream.sent:
        if e["code"] == 503:
            assert "database" in e["body"], e
    answered = {e["anum"]: stream.stored_id(e) for e in stream.sent
                if stream.stored_id(e) is not None}
    rows = dict(query(dsn, "SELECT anum, id FROM tb_callbacks WHERE source = 'http'"))
    half = {anum: cbid for anum, cbid in rows.items() if anum not in answered}
    assert not half, f"rows stored for requests answered 503: {half}"
    assert rows == answered
    left = query(dsn, "SELECT key FROM tb_idempotency WHERE callbackid IS NULL")
    assert left == [], f"Idempotency-Keys claimed for requests never stored: {left}"


async def bridged_callback(dsn, alice):
    """alice's callback A_NUMBER -> B_NUMBER queued by SQL, once bridged through SIPp:
    (its id, a function that reads its status)."""
    (cbid,), = query(dsn, "INSERT INTO tb_callbacks (userid, anum, bnum, source, status)"
                          " VALUES (%s, %s, %s, 'db', 'pending') RETURNING id",
                     (alice, A_NUMBER, B_NUMBER))

    def status():
        return query(dsn, "SELECT status FROM tb_callbacks WHERE id = %s", (cbid,))[0][0]

    await wait_until(lambda: status() == "bridged", 20, "the bridged call")
    return cbid, status


@pytest_twisted.ensureDeferred
async def test_postgres_restarted_under_http_load_with_a_bridged_call(tmp_path, cluster):
    """twistd mizu on a private PostgreSQL; a callback bridged through SIPp; HTTP callback
    requests streaming in at 20/s. PostgreSQL is stopped -m immediate, held down 5 s (B
    hangs up meanwhile), started again, later restarted -m immediate once more.

    Every request is answered 202/200 or 503 naming the database; each answered id is
    stored with its A-number and nothing was stored for a 503; a 503'd request sent again
    with its Idempotency-Key is stored then; no key is left claimed without a row. The
    call is not cut: B's tone still reaches A during the outage, A gets mizu's BYE only
    after B hung up; its settlement waits for the database: after it returns the callback
    is 'completed' with A and B CDRs billed for the whole call, the credit is down by
    exactly the CDR costs and no reservation is left."""
    dsn = cluster.dsn("mizu")
    store = StoreService(DatabaseConfig(dsn=dsn), reactor)
    await store.startService()  # the schema, to provision before mizu starts
    await store.stopService()
    (alice,), = query(dsn, "INSERT INTO tb_user (username, password, credit)"
                           " VALUES ('alice', 'wonder', 10) RETURNING id")
    query(dsn, "INSERT INTO tb_rates (prefix, price, initblock, increment) VALUES"
               " ('4917', %s, 1, 1), ('4420', %s, 1, 1)", (A_PRICE, B_PRICE))
    query(dsn, "INSERT INTO tb_config (name, value) VALUES ('callbackdelay', '3600')")
    sip_port, port_a, port_b, http_port, console_port = (free_port() for _ in range(5))
    for prefix, port in ((A_NUMBER, port_a), ("4420", port_b)):
        query(dsn, "INSERT INTO tb_routes (prefix, gateway) VALUES (%s, %s)",
              (prefix, f"sip:{{number}}@127.0.0.1:{port}"))
    sounds = short_prompts(tmp_path / "sounds")
    (tmp_path / "mizu.ini").write_text(
        f"[sip]\nlisten = 127.0.0.1:{sip_port}\nworkers = 1\nshutdown_grace = 0\n"
        f"[http]\nlisten = tcp:{http_port}:interface=127.0.0.1\n{LIMITS}"
        f"[console]\nlisten = tcp:{console_port}:interface=127.0.0.1\n"
        "[console.users]\nadmin = pw\n"
        f"[ivr]\nsounds = {sounds}\n"
        "[callback]\nheartbeat = 1\nstale_after = 60\npoll_interval = 1\nmax_attempts = 1\n"
        f"max_call_time = 60\n{NO_FRAUD_LIMITS}")
    (rtp_a, rtp_port_a), (rtp_b, rtp_port_b) = RtpPeer.listen(), RtpPeer.listen()
    a_trace, b_trace = tmp_path / "a.log", tmp_path / "b.log"
    a = sipp("uas_answer.xml", "-key", "rtpport", str(rtp_port_a), "-trace_msg",
             "-message_file", str(a_trace), port=port_a, timeout=90)
    b = sipp("uas_answer_bye.xml", "-d", "4000", "-key", "rtpport", str(rtp_port_b),
             "-trace_msg", "-message_file", str(b_trace), port=port_b, timeout=90)
    a_ended, b_ended = when_done(a), when_done(b)
    await listening(port_a)
    await listening(port_b)
    proc = start_twistd(tmp_path, dsn, "mizu.log")
    stream = Stream(http_port)
    try:
        await logged(tmp_path, proc, "mizu.log", f"mizu {__version__} ready")
        cbid, status = await bridged_callback(dsn, alice)
        rtp_b.start_tone()
        stream.start()
        await sleep(1.5)
        down = reactor.seconds()
        await threads.deferToThread(cluster.stop, "immediate")
        await sleep(5)
        await threads.deferToThread(cluster.start)
        up = reactor.seconds()
        # B hung up (4 s after answering) while the database was down; A was still there.
        assert b_ended and down < b_ended[0] < up, (down, b_ended, up)
        heard = [t for t in rtp_a.loud_times() if down < t < b_ended[0]]
        assert len(heard) > 50, f"{len(heard)} loud packets at A during the outage"
        await sleep(3)
        await threads.deferToThread(cluster.restart, "immediate")
        restarted = reactor.seconds()
        await sleep(3)
        await stream.stop()
        await finished(b)
        await finished(a)  # mizu's BYE
        assert a_ended[0] >= b_ended[0]
        assert [m for kind, m in sip_messages(b_trace) if kind == "sent"
                and m.startswith("BYE ")], "B hung up itself"
        assert [m for kind, m in sip_messages(a_trace) if kind == "received"
                and m.startswith("BYE ")]

        # The settlement waited for the database and went through once it was back.
        await wait_until(lambda: status() in ("completed", "failed"), 30, "the settlement")
        (state, reason), = query(dsn, "SELECT status, reason FROM tb_callbacks WHERE id = %s",
                                 (cbid,))
        assert (state, reason) == ("completed", ""), (state, reason, (
            tmp_path / "mizu.log").read_text()[-4000:])
        columns = ("leg", "result", "answertime", "endtime", "billedduration", "cost")
        legs = {r[0]: dict(zip(columns, r, strict=True)) for r in query(
            dsn, "SELECT leg, result, extract(epoch FROM answertime)::float8,"
                 " extract(epoch FROM endtime)::float8, billedduration, cost FROM tb_cdrs"
                 " WHERE callbackid = %s", (cbid,))}
        assert sorted(legs) == ["A", "B"], legs
        billed(legs["A"], A_PRICE)
        billed(legs["B"], B_PRICE)
        assert 3 <= legs["B"]["billedduration"] <= 5, legs  # B talked 4 s
        assert legs["B"]["result"] not in ("interrupted", "cut"), legs

        # Requests: 503 while the database was away, nothing else; nothing half-stored.
        refused = [e for e in stream.sent if e["code"] == 503]
        assert refused, "no request met the outage"
        late = [e for e in stream.sent if e["at"] > restarted + 1.5]
        assert late and all(stream.stored_id(e) for e in late), late
        assert len(stream.sent) >= 0.8 * 20 * (reactor.seconds() - down)
        retried = [stream.one("json-key", e["anum"], e["key"]) for e in refused
                   if e["kind"] == "json-key"]
        again = await defer.gatherResults(retried)
        assert all(e["code"] == 202 for e in again), again
        check_http_answers(stream, dsn)
        check_money(dsn, alice, Decimal(10))
    finally:
        if stream._loop.running:
            stream._loop.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            await threads.deferToThread(proc.wait, 30)
        a.kill()
        b.kill()
        for peer in (rtp_a, rtp_b):
            await peer.close()


SMPP = ("[smpp]\nenabled = yes\nhost = 127.0.0.1\nport = {port}\nsystem_id = mizu\n"
        "password = secret\nsource_addr = 4000\nenquire_interval = 5\nresponse_timeout = 2\n"
        "duplicate_window = 600\n")
SENDERS = [f"49171{n:03d}" for n in range(60)]


def smpp_bound(root) -> bool:
    return any(line.startswith("smpp bound") for line in root.status_lines())


@pytest_twisted.ensureDeferred
async def test_smsc_killed_in_a_burst_of_texts(tmp_path, database, sql):
    """A burst of "CB 4420111" texts from 60 registered A-numbers, one every 10 ms; the
    SMSC is killed -9 once 15 of them are acknowledged. Every text the SMSC saw answered
    ESME_ROK is stored, once. The SMSC is started again (same port); meanwhile the calls
    are over (rows completed), so only [smpp] duplicate_window can tell a copy. It delivers
    again every text it had no ESME_ROK for and 5 that were acknowledged: each is answered
    ESME_ROK, copies are told the first callback's id, and no text is stored twice."""
    smsc = Smsc()
    await smsc.start()
    await smsc.command("accept_binds mizu secret")
    path = tmp_path / "mizu.ini"
    path.write_text("[sip]\nworkers = 0\n[http]\nlisten = tcp:0:interface=127.0.0.1\n"
                    "[console]\nlisten = tcp:0:interface=127.0.0.1\n"
                    "[console.users]\nadmin = pw\n" + NO_FRAUD_LIMITS
                    + SMPP.format(port=smsc.port))
    root = await running_mizu(path, database, tmp_path / "var")
    again = None
    try:
        (alice,), = sql("INSERT INTO tb_user (username, password, credit)"
                        " VALUES ('alice', 'wonder', 5) RETURNING id")
        for sender in SENDERS:
            sql("INSERT INTO tb_anumbers (anumber, userid) VALUES (%s, %s)", (sender, alice))
        await wait_until(lambda: smpp_bound(root), 20, "bound")
        sent: dict[int, str] = {}  # seq -> sender
        for sender in SENDERS:
            try:
                seq = await smsc.deliver(sender, "4000", gsm_hex("CB 4420111"))
            except SmscError:
                break  # killed
            sent[seq] = sender
            acked = [e for e in smsc.events if e["event"] == "deliver_sm_resp"]
            if len(acked) >= 15 and not smsc._exited:
                smsc.kill()
            await sleep(0.01)
        await wait_until(lambda: smsc._exited, 5, "the SMSC to die")
        acked = {sent[e["seq"]] for e in smsc.events
                 if e["event"] == "deliver_sm_resp" and e["status"] == 0}
        assert all(e["status"] == 0 for e in smsc.events if e["event"] == "deliver_sm_resp")
        unacked = [s for s in sent.values() if s not in acked]
        assert len(acked) >= 15 and unacked, (len(acked), len(sent))
        await wait_until(lambda: not smpp_bound(root), 10, "the link down")
        await sleep(1)  # what mizu was still storing is stored (or not) by now

        def stored():
            return sql("SELECT anum, id FROM tb_callbacks WHERE source = 'sms' ORDER BY id")

        first = dict(stored())
        assert len(first) == len(stored()), "a text stored twice"
        assert acked <= set(first), sorted(acked - set(first))  # acknowledged: stored
        assert set(first) <= set(sent.values())
        sql("UPDATE tb_callbacks SET status = 'completed'")  # the calls took place

        again = Smsc(port=smsc.port)
        await again.start()
        await again.command("accept_binds mizu secret")
        await again.wait_for("bind", status=0, timeout=30)
        await wait_until(lambda: smpp_bound(root), 10, "bound again")
        copies = sorted(acked)[:5]
        for sender in unacked + copies:
            seq = await again.deliver(sender, "4000", gsm_hex("CB 4420111"))
            resp = await again.wait_for("deliver_sm_resp", seq=seq)
            assert resp["status"] == 0, (sender, resp)
        rows = stored()
        assert len(rows) == len({anum for anum, _ in rows}), f"stored twice: {rows}"
        assert {anum for anum, _ in rows} == set(sent.values())
        ids = dict(rows)
        for sender in copies:  # told the callback it already has
            reply = await again.wait_for("submit_sm", destination_addr=sender)
            text = bytes.fromhex(reply["short_message_hex"]).decode()
            assert text.startswith(f"Callback {ids[sender]} accepted"), (sender, text)
    finally:
        await root.stopService()
        smsc.kill()
        if again is not None:
            await again.stop()


DISK_FULL = "No space left on device"


@pytest_twisted.ensureDeferred
async def test_embedded_database_disk_full(tmp_path, small_disk):
    """mizu on its embedded PostgreSQL, whose data folder is a 96 MB tmpfs; a callback
    bridged through SIPp. The disk is filled up (a file takes every free byte: the kernel
    then refuses writes with ENOSPC, as on a real full disk).

    Requests stream in until PostgreSQL cannot extend a table any more; from then on HTTP
    answers 503 naming the database and the full disk, the console's ``callback`` answers
    ``ERROR:`` with the same reason, a text gets the temporary ESME_RX_T_APPN (the SMSC
    delivers it again); the live call goes on (B's tone reaches A) until B hangs up. Once
    the filler is removed all three are accepted again, the call is settled ('completed',
    A and B billed), the credit is down by exactly the CDR costs, and every answered
    request is stored and no refused one."""
    smsc = Smsc()
    await smsc.start()
    await smsc.command("accept_binds mizu secret")
    sip_port, port_a, port_b = free_port(), free_port(), free_port()
    sounds = short_prompts(tmp_path / "sounds")
    path = tmp_path / "mizu.ini"
    path.write_text(
        f"[sip]\nlisten = 127.0.0.1:{sip_port}\nworkers = 1\nshutdown_grace = 0\n"
        f"[http]\nlisten = tcp:0:interface=127.0.0.1\n{LIMITS}"
        "[console]\nlisten = tcp:0:interface=127.0.0.1\n[console.users]\nadmin = pw\n"
        f"[ivr]\nsounds = {sounds}\n"
        "[callback]\nheartbeat = 1\nstale_after = 60\npoll_interval = 1\nmax_attempts = 1\n"
        f"max_call_time = 60\n{NO_FRAUD_LIMITS}" + SMPP.format(port=smsc.port))
    (rtp_a, rtp_port_a), (rtp_b, rtp_port_b) = RtpPeer.listen(), RtpPeer.listen()
    a = sipp("uas_answer.xml", "-key", "rtpport", str(rtp_port_a), port=port_a, timeout=90)
    b = sipp("uas_answer_bye.xml", "-d", "8000", "-key", "rtpport", str(rtp_port_b),
             port=port_b, timeout=90)
    a_ended, b_ended = when_done(a), when_done(b)
    await listening(port_a)
    await listening(port_b)
    root = await running_mizu(path, None, small_disk.path)
    console = None
    try:
        store = root.getServiceNamed("store")
        assert store.embedded is not None and str(store.embedded.pgdata).startswith(
            str(small_disk.path))
        dsn = store.pool.dsn
        (alice,), = query(dsn, "INSERT INTO tb_user (username, password, credit)"
                               " VALUES ('alice', 'wonder', 10) RETURNING id")
        query(dsn, "INSERT INTO tb_anumbers (anumber, userid) VALUES (%s, %s)",
              (SENDERS[0], alice))
        query(dsn, "INSERT INTO tb_rates (prefix, price, initblock, increment) VALUES"
                   " ('4917', %s, 1, 1), ('4420', %s, 1, 1)", (A_PRICE, B_PRICE))
        query(dsn, "INSERT INTO tb_config (name, value) VALUES ('callbackdelay', '3600')")
        for prefix, port in ((A_NUMBER, port_a), ("4420", port_b)):
            query(dsn, "INSERT INTO tb_routes (prefix, gateway) VALUES (%s, %s)",
                  (prefix, f"sip:{{number}}@127.0.0.1:{port}"))
        await root.reload()
        await smsc.wait_for("bind", status=0, timeout=20)
        await wait_until(lambda: smpp_bound(root), 10, "bound")
        console = TelnetSession(root.getServiceNamed("console").port)
        assert await threads.deferToThread(console.login, "admin", "pw") == b"prompt"

        def command(line):
            return threads.deferToThread(console.command, line)

        async def text(sender):
            seq = await smsc.deliver(sender, "4000", gsm_hex("CB 4420111"))
            return (await smsc.wait_for("deliver_sm_resp", seq=seq))["status"]

        cbid, status = await bridged_callback(dsn, alice)
        rtp_b.start_tone()

        filled = small_disk.fill()
        full = reactor.seconds()
        assert filled > 0 and small_disk.available() == 0
        stream = Stream(root.getServiceNamed("http").port)
        for _ in range(1000):  # until tb_callbacks cannot grow
            entry = await stream.one("mvapi")
            if entry["code"] == 503:
                break
        assert entry["code"] == 503, "the full disk never refused a request"
        assert DISK_FULL in entry["body"], entry
        for _ in range(8):
            entry = await stream.one()
            assert entry["code"] == 503, entry
            assert DISK_FULL in entry["body"], entry
        lines, final = await command(f"callback {A_NUMBER} 4420222 user=alice")
        assert (lines, final[:6]) == ([], "ERROR:") and DISK_FULL in final, (lines, final)
        assert await text(SENDERS[0]) == 0x64  # ESME_RX_T_APPN: deliver it again later
        lines, final = await command("status")  # the connections are up: status says why
        database = [line for line in lines if line.startswith("database ")]
        assert final == "OK" and "last server error" in database[0], lines
        assert DISK_FULL in database[0], database

        await finished(b)  # B hung up after 8 s: the call was not cut by the full disk
        heard = [t for t in rtp_a.loud_times() if full < t < b_ended[0]]
        assert len(heard) > 50, f"{len(heard)} loud packets at A while the disk was full"
        await finished(a)
        assert a_ended[0] >= b_ended[0]
        await sleep(1)
        small_disk.free()

        entry = await stream.one()
        assert stream.stored_id(entry), entry
        lines, final = await command(f"callback {A_NUMBER} 4420222 user=alice")
        assert final == "OK" and lines[0].startswith("callback "), (lines, final)
        assert await text(SENDERS[0]) == 0
        await wait_until(lambda: status() in ("completed", "failed"), 30, "the settlement")
        assert query(dsn, "SELECT status, reason FROM tb_callbacks WHERE id = %s",
                     (cbid,)) == [("completed", "")]
        columns = ("leg", "result", "answertime", "endtime", "billedduration", "cost")
        legs = {r[0]: dict(zip(columns, r, strict=True)) for r in query(
            dsn, "SELECT leg, result, extract(epoch FROM answertime)::float8,"
                 " extract(epoch FROM endtime)::float8, billedduration, cost FROM tb_cdrs"
                 " WHERE callbackid = %s", (cbid,))}
        assert sorted(legs) == ["A", "B"], legs
        billed(legs["A"], A_PRICE)
        billed(legs["B"], B_PRICE)
        check_http_answers(stream, dsn)
        assert query(dsn, "SELECT count(*) FROM tb_callbacks WHERE source IN"
                          " ('sms', 'console')") == [(2,)]
        check_money(dsn, alice, Decimal(10))
    finally:
        if console is not None:
            console.close()
        small_disk.free()
        await root.stopService()
        await smsc.stop()
        a.kill()
        b.kill()
        for peer in (rtp_a, rtp_b):
            await peer.close()
