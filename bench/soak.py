"""Soak: mixed callback load at half the node's capacity for N minutes; nothing may be left.

Usage: python3 bench/soak.py [--minutes N] [--check]     (default 10 minutes)

Starts ``twistd -n mizu`` as its own process (2 SIP workers, the embedded PostgreSQL in a
temporary folder, the HTTP limits off, the ``[fraud]`` guards off, short
tone prompts, ``callbackdelay`` 0, ``ring_timeout`` 5), a load SMSC in this process (the
``LoadServer`` of bench/smsc_load.py, delivering one text at a time on demand), and SIPp
peers on loopback: the A phones (bench/sipp/soak_uas_a.xml: answer, wait for mizu's BYE,
log each INVITE's arrival; soak_uas_a_typing.xml for ANI callbacks, whose IVR asks for B:
it also types B by SIP INFO), and three kinds of B phone chosen by the B-number's prefix
(routes): 70 % answer and hang up after 1-3 s (bench/sipp/soak_uas_b.xml), 15 % busy
(tests/sipp/uas_busy.xml), 15 % ring until mizu's ring timeout (tests/sipp/uas_ring.xml).

Triggers take turns: JSON API (``POST /api/v1/callbacks``), ``/mvapireq/`` callback, SMS
(``CB <bnum>`` from a sender in ``tb_anumbers``) and ANI (bench/sipp/soak_uac_trigger.xml:
an INVITE from a known A-number to the access number, refused 480; a worker that is full
answers 486 and the next worker is tried). Each trigger has an A-number of its own. The load
is closed-loop: a new trigger is sent whenever fewer callbacks than half of what the node
can hold (its workers' capacities from the console ``status``, 2 slots a callback) are
accepted and not yet ended.

Prints one line a minute (triggers, ends, live calls, p99 of trigger -> A-leg INVITE for the
A-legs that arrived in that minute, RSS and open files of the controller and of each
worker), then a summary: outcomes by kind of B, p99 trigger -> A-leg of the triggers sent in
the first and in the last minute, RSS growth per 1,000 callbacks (printed, never asserted),
open files at start and end, and what is left once the calls have drained (at most 45 s):
live legs and sessions, IVR sessions, reservations, unsettled CDRs, rows not in a final
state, callbacks lost (a trigger accepted whose row did not end completed/failed with a
reason), worker restarts.

``--check`` (the CI form) exits 1, naming each problem, when anything of that last list is
not zero, or the controller or a worker died, or mizu's log has ``log_errors``
(critical/error lines and tracebacks) or ``prompts_not_played`` (workers' "cannot play"
warnings: pjsua2 players that were not freed once made prompts go silent under load).
``--keep`` keeps the temporary folder (mizu.log, SIPp logs).
Needs ``sipp`` (Debian sip-tester) and ``telnet``; installs nothing. The whole run takes N
minutes plus about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from http_callbacks import FRAUD_OFF, Connection, stop_mizu  # noqa: E402
from smpp.pdu import operations, pdu_types  # noqa: E402
from smpp_inbound import TWISTD, postmaster, wait_for  # noqa: E402
from smsc_load import LoadServer, encoded  # noqa: E402

from mizu import __version__  # noqa: E402
from tests.e2e.peers import SCENARIOS, free_port  # noqa: E402
from tests.e2e.test_callback import short_prompts  # noqa: E402
from tests.telnetclient import TelnetSession  # noqa: E402

ACCESS_NUMBER = "4930555"
USERS = [(f"soak{n}", f"pw-soak-{n}") for n in range(1, 5)]
SOURCES = ("json", "sms", "ani", "mvapi")
# kind of B: (B-number prefix, weight, expected (status, reason) of the callback)
KINDS = {"answer": ("44201", 70, ("completed", "")),
         "busy": ("44202", 15, ("failed", "B busy")),
         "ring": ("44203", 15, ("failed", "B did not answer"))}
FINAL = ("completed", "failed")
DRAIN = 45  # seconds the calls get to end once the load stops


@dataclass
class Trigger:
    """One callback request and what became of it."""

    n: int
    source: str
    anum: str
    bnum: str
    kind: str
    sent: float = 0.0  # wall clock, as SIPp's gettimeofday
    accepted: bool | None = None  # None while it is being sent
    refusal: str = ""
    cbid: int | None = None
    status: str = ""
    reason: str = ""
    a_leg: float | None = None  # when the A-leg INVITE reached the A phone

    @property
    def open(self) -> bool:
        return self.accepted is not False and self.status not in FINAL

    @property
    def latency(self) -> float | None:
        return None if self.a_leg is None else self.a_leg - self.sent


def p99_ms(values: list[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(len(values) * 0.99))] * 1000:.0f}"


class Sipp:
    """Long-running SIPp UAS peers on loopback, one per kind of phone."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.binary = shutil.which("sipp")
        if self.binary is None:
            raise SystemExit("bench/soak.py needs SIPp: apt-get install sip-tester")
        self.procs: list[subprocess.Popen] = []

    def serve(self, scenario: Path, name: str) -> int:
        port = free_port()
        argv = [self.binary, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port),
                "-mp", str(free_port()), "-nostdin", "-aa", "-trace_logs",
                "-log_file", str(self.folder / f"{name}.log")]
        self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                           stderr=open(self.folder / f"{name}.err", "wb")))
        return port

    def check(self) -> list[str]:
        return [f"SIPp peer {p.args[2]} exited with {p.returncode}"
                for p in self.procs if p.poll() is not None]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    async def trigger(self, port: int, anum: str, log: Path) -> tuple[float | None, str]:
        """One ANI trigger call to a worker's port: (when it was sent, the final code)."""
        proc = await asyncio.create_subprocess_exec(
            self.binary, f"127.0.0.1:{port}", "-sf", str(HERE / "sipp" / "soak_uac_trigger.xml"),
            "-s", ACCESS_NUMBER, "-key", "anum", anum, "-m", "1", "-i", "127.0.0.1",
            "-p", str(free_port()), "-mp", str(free_port()), "-nostdin", "-timeout", "10s",
            "-timeout_error", "-trace_logs", "-log_file", str(log),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        code = await proc.wait()
        text = log.read_text(errors="replace") if log.exists() else ""
        log.unlink(missing_ok=True)
        sent = re.search(r"^sent (\d+)\S* (\d+)", text, re.M)
        final = re.search(r"^final (\d+)", text, re.M)
        at = int(sent.group(1)) + int(sent.group(2)) / 1e6 if sent else None
        return at, final.group(1) if final else f"sipp exit {code}"


class Sms:
    """The load SMSC of bench/smsc_load.py, delivering single texts and awaiting answers."""

    def __init__(self):
        self.server = LoadServer()
        self.server.phase = self  # its ESME protocol hands every deliver_sm_resp to us
        self.done = asyncio.get_running_loop().create_future()
        self.waiting: dict[int, asyncio.Future] = {}
        self.seq = 0
        self.port = 0
        self._listener = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self.server.protocol, "127.0.0.1", 0)
        self.port = self._listener.sockets[0].getsockname()[1]

    def answered(self, seq: int, status: int, transport) -> bool:
        future = self.waiting.pop(seq, None)
        if future is None:
            return False
        if not future.done():
            future.set_result(status)
        return True

    async def deliver(self, sender: str, text: str) -> int | None:
        """Deliver one text; its deliver_sm_resp status, None without an answer in 10 s."""
        if self.server.esme is None:
            return None
        self.seq += 1
        esm = pdu_types.EsmClass(pdu_types.EsmClassMode.DEFAULT, pdu_types.EsmClassType.DEFAULT)
        pdu = encoded(operations.DeliverSM(
            seqNum=self.seq, source_addr=sender, destination_addr="4915790000",
            short_message=text.encode(), esm_class=esm, data_coding=pdu_types.DataCoding()))
        future = self.waiting[self.seq] = asyncio.get_running_loop().create_future()
        self.server.esme.transport.write(pdu)
        try:
            return await asyncio.wait_for(future, 10)
        except TimeoutError:
            self.waiting.pop(self.seq, None)
            return None

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()


class Http:
    """Keep-alive connections to mizu's HTTP listener (``Connection`` of http_callbacks)."""

    def __init__(self, port: int):
        self.port = port
        self.idle: list[Connection] = []

    async def status(self, request: bytes) -> int:
        conn = None
        while self.idle and conn is None:
            conn = self.idle.pop()
            if conn.transport.is_closing():
                conn = None
        if conn is None:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(Connection, "127.0.0.1", self.port)
        try:
            status = await asyncio.wait_for(conn.send(request), 15)
        except (TimeoutError, ConnectionError):
            conn.transport.close()
            return 0
        if not conn.transport.is_closing():
            self.idle.append(conn)
        return status

    async def metrics(self) -> dict[str, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        body = (await reader.read()).decode(errors="replace")
        writer.close()
        return {m.group(1): float(m.group(2)) for m in
                re.finditer(r"^(mizu_[a-z_]+(?:\{[^}]*\})?) (\S+)$", body, re.M)}

    def close(self) -> None:
        for conn in self.idle:
            conn.transport.close()


def config_text(folder: Path, ports: dict[str, int], workers: int) -> str:
    """mizu.ini of the soak: loopback only, limits off, short timeouts."""
    text = (f"[sip]\nlisten = 127.0.0.1:{ports['sip']}\nworkers = {workers}\n"
            "shutdown_grace = 5\n"
            f"[http]\nlisten = tcp:{ports['http']}:interface=127.0.0.1\n"
            "address_rate = 0\nuser_rate = 0\nmax_connections = 0\n"
            f"[console]\nlisten = tcp:{ports['console']}:interface=127.0.0.1\n"
            "[console.users]\nadmin = soak\n"
            f"[ivr]\nsounds = {folder / 'sounds'}\nfirst_digit_timeout = 3\n"
            "inter_digit_timeout = 2\nmax_ivr_time = 60\n"
            "[callback]\nring_timeout = 5\nmax_call_time = 60\npoll_interval = 2\n"
            "max_attempts = 2\nretry_delay = 2\n"
            f"[smpp]\nenabled = yes\nhost = 127.0.0.1\nport = {ports['smsc']}\n"
            "system_id = mizu\npassword = soak\nbind = transceiver\n"
            "source_addr = 4915790000\n" + FRAUD_OFF)
    return text


class Soak:
    def __init__(self, args, folder: Path):
        self.args, self.folder = args, folder
        self.triggers: list[Trigger] = []
        self.by_anum: dict[str, Trigger] = {}
        self.rng = random.Random(1)
        self.sipp = Sipp(folder)
        self.mizu: subprocess.Popen | None = None
        self.db = None
        self.console: TelnetSession | None = None
        self.workers: dict[int, dict] = {}
        self.a_log_offsets: dict[str, int] = {}
        self.samples: list[dict] = []
        self.problems: list[str] = []

    # -- set-up ------------------------------------------------------------------------------
    async def start(self) -> None:
        f = self.folder
        short_prompts(f / "sounds")
        a = self.sipp.serve(HERE / "sipp" / "soak_uas_a.xml", "a")
        a_typing = self.sipp.serve(HERE / "sipp" / "soak_uas_a_typing.xml", "a-typing")
        b = {"answer": self.sipp.serve(HERE / "sipp" / "soak_uas_b.xml", "b-answer"),
             "busy": self.sipp.serve(Path(SCENARIOS) / "uas_busy.xml", "b-busy"),
             "ring": self.sipp.serve(Path(SCENARIOS) / "uas_ring.xml", "b-ring")}
        self.sms = Sms()
        await self.sms.start()
        workers = 2
        ports = {"sip": free_port(workers), "http": free_port(), "console": free_port(),
                 "smsc": self.sms.port}
        self.ports = ports
        (f / "mizu.ini").write_text(config_text(f, ports, workers))
        log = self.log = f / "mizu.log"
        with open(log, "wb") as out:
            self.mizu = subprocess.Popen(
                [*TWISTD, "-n", "--pidfile=", "mizu", "--config", str(f / "mizu.ini"),
                 "--datadir", str(f / "var")], cwd=f, stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])))
        await asyncio.to_thread(wait_for, log, self.mizu, f"mizu {__version__} ready")
        await asyncio.to_thread(wait_for, log, self.mizu, "SMPP: bound")
        self.db = psycopg2.connect(postmaster(f / "var").get_uri())
        self.db.autocommit = True
        gateway = "sip:{{number}}@127.0.0.1:{}"
        self.sql("INSERT INTO tb_user (username, password, credit) VALUES "
                 + ", ".join(["(%s, %s, 1000000)"] * len(USERS)),
                 [x for user in USERS for x in user])
        self.sql("INSERT INTO tb_user (username, usertype, authip)"
                 " VALUES ('carrier', 'trafficsender', '127.0.0.1')")
        self.sql("INSERT INTO tb_user (username, iscallback) VALUES (%s, 6)", (ACCESS_NUMBER,))
        self.sql("INSERT INTO tb_rates (prefix, price, initblock, increment) VALUES"
                 " ('491', 0.01, 1, 1), ('44', 0.05, 1, 1)")
        routes = [("4917", gateway.format(a)), ("4918", gateway.format(a_typing))]
        routes += [(KINDS[k][0], gateway.format(port)) for k, port in b.items()]
        self.sql("INSERT INTO tb_routes (prefix, gateway) VALUES "
                 + ", ".join(["(%s, %s)"] * len(routes)), [x for r in routes for x in r])
        self.console = TelnetSession(ports["console"])
        if self.console.login("admin", "soak") != b"prompt":
            raise SystemExit("cannot log in to the console")
        for line in ("config callbackdelay 0", "reload"):
            lines, final = await self.command(line)
            if final != "OK":
                raise SystemExit(f"console {line}: {final} {lines}")
        began = time.monotonic()
        while True:
            self.workers = await self.worker_status()
            if self.workers and all(w["capacity"] and not w["down"]
                                    for w in self.workers.values()):
                break
            if time.monotonic() - began > 60:
                raise SystemExit(f"the SIP workers did not come up: {self.workers}")
            await asyncio.sleep(0.5)
        self.first_pids = {i: w["pid"] for i, w in self.workers.items()}
        self.http = Http(ports["http"])

    def sql(self, query: str, params=()) -> list[tuple]:
        with self.db.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    async def command(self, line: str) -> tuple[list[str], str]:
        return await asyncio.to_thread(self.console.command, line)

    async def worker_status(self) -> dict[int, dict]:
        lines, _ = await self.command("status")
        workers = {}
        for line in lines:
            m = re.match(r"sip worker (\d+) pid=(\d+) port=(\d+) calls=(\d+)/(\d+)"
                         r"(?: engine=(\S+))?( down)?", line)
            if m:
                workers[int(m.group(1))] = {
                    "pid": int(m.group(2)), "port": int(m.group(3)), "calls": int(m.group(4)),
                    "capacity": int(m.group(5)), "engine": m.group(6) or "?",
                    "down": bool(m.group(7))}
        return workers

    # -- load --------------------------------------------------------------------------------
    def next_trigger(self) -> Trigger:
        n = len(self.triggers)
        kind = self.rng.choices(list(KINDS), [k[1] for k in KINDS.values()])[0]
        source, prefix = SOURCES[n % len(SOURCES)], KINDS[kind][0]
        bnum = f"{prefix}{n % 10000:04d}"
        # an ANI caller types B when called back: its phone reads it from the A-number
        anum = (f"4918{prefix[-1]}{n // 10000 % 100:02d}{n % 10000:04d}" if source == "ani"
                else f"4917{n:07d}")
        t = Trigger(n=n, source=source, anum=anum, bnum=bnum, kind=kind)
        self.triggers.append(t)
        self.by_anum[t.anum] = t
        if source in ("ani", "sms"):  # a known caller: the A-number is the user's
            self.sql("INSERT INTO tb_anumbers (anumber, userid) SELECT %s, id FROM tb_user"
                     " WHERE username = %s", (anum, USERS[n % len(USERS)][0]))
        return t

    async def fire(self, t: Trigger) -> None:
        user, password = USERS[t.n % len(USERS)]
        if t.source == "ani":
            order = sorted(self.workers.values(), key=lambda w: w["port"])
            k = t.n // len(SOURCES)
            for w in order[k % len(order):] + order[:k % len(order)]:
                at, code = await self.sipp.trigger(w["port"], t.anum,
                                                   self.folder / f"trigger-{t.n}.log")
                if t.sent == 0.0:
                    t.sent = at or time.time()
                if code == "480":
                    t.sent = at or t.sent  # the accepted attempt
                    t.accepted = True
                    return
                t.refusal = code
                if code not in ("486", "503"):
                    break
            t.accepted = False
            return
        t.sent = time.time()
        if t.source == "sms":
            status = await self.sms.deliver(t.anum, f"CB {t.bnum}")
            t.accepted = status == 0
            t.refusal = "" if t.accepted else f"deliver_sm {status}"
            return
        if t.source == "json":
            body = f'{{"anum": "{t.anum}", "bnum": "{t.bnum}"}}'.encode()
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            request = (f"POST /api/v1/callbacks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       f"Authorization: Basic {basic}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            expect = 202
        else:
            request = (f"GET /mvapireq/?apientry=callback&authid={user}&authpwd={password}"
                       f"&anum={t.anum}&bnum={t.bnum} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                       ).encode()
            expect = 200
        status = await self.http.status(request)
        t.accepted = status == expect
        t.refusal = "" if t.accepted else f"HTTP {status}"

    def refresh(self) -> None:
        """Rows of the open triggers from tb_callbacks; A-leg arrivals from the A log."""
        for name in ("a", "a-typing"):
            path = self.folder / f"{name}.log"
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(self.a_log_offsets.get(name, 0))
                chunk = f.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]
            self.a_log_offsets[name] = self.a_log_offsets.get(name, 0) + len(complete)
            self.arrived(complete.decode(errors="replace"))
        anums = [t.anum for t in self.triggers if t.accepted and t.status not in FINAL]
        if anums:
            for anum, cbid, status, reason in self.sql(
                    "SELECT anum, id, status, reason FROM tb_callbacks WHERE anum = ANY(%s)"
                    " ORDER BY id", (anums,)):
                t = self.by_anum[anum]
                t.cbid, t.status, t.reason = cbid, status, reason

    def arrived(self, complete: str) -> None:
        """Note the A-leg INVITEs an A phone logged."""
        for m in re.finditer(r"^A (\d+) (\d+)\S* (\d+)", complete, re.M):
            t = self.by_anum.get(m.group(1))
            at = int(m.group(2)) + int(m.group(3)) / 1e6
            if t is not None and t.a_leg is None:
                t.a_leg = at

    def rss_fds(self) -> dict:
        """RSS (MB) and open files of the controller and of each worker now."""
        procs = {"ctl": self.mizu.pid} | {f"w{i}": w["pid"] for i, w in self.workers.items()}
        out = {}
        for name, pid in procs.items():
            try:
                p = psutil.Process(pid)
                out[name] = (p.memory_info().rss / 2**20, p.num_fds())
            except psutil.NoSuchProcess:
                out[name] = (0.0, 0)
        return out

    async def sample(self) -> dict:
        metrics = await self.http.metrics()
        self.workers = await self.worker_status()
        ended = sum(1 for t in self.triggers if t.status in FINAL)
        s = {"at": time.time(), "ended": ended, "procs": self.rss_fds(), "metrics": metrics,
             "reservations": self.sql("SELECT count(*) FROM tb_reservations")[0][0],
             "unplayed": self.log.read_text(errors="replace").count(": cannot play ")}
        self.samples.append(s)
        restarted = [i for i, w in self.workers.items()
                     if w["pid"] != self.first_pids.get(i) or w["down"]]
        if restarted:
            self.problems.append(f"worker(s) {restarted} died or restarted")
            self.first_pids.update({i: self.workers[i]["pid"] for i in restarted})
        return s

    def minute_line(self, minute: int, began: float, s: dict) -> str:
        window = (began + (minute - 1) * 60, began + minute * 60)
        sent = [t for t in self.triggers if window[0] <= t.sent < window[1]]
        by = " ".join(f"{src}={sum(1 for t in sent if t.source == src)}" for src in SOURCES)
        lat = [t.latency for t in self.triggers
               if t.a_leg is not None and window[0] <= t.a_leg < window[1]]
        ended = [t for t in self.triggers if t.status in FINAL]
        m = s["metrics"]
        procs = " ".join(f"{k}={mb:.1f}MB/{fds}fd" for k, (mb, fds) in s["procs"].items())
        return (f"minute {minute}: triggers {len(sent)} ({by})"
                f" refused {sum(1 for t in sent if t.accepted is False)}"
                f" ended {len(ended)} total (completed"
                f" {sum(1 for t in ended if t.status == 'completed')})"
                f" live={m.get('mizu_live_calls', -1):.0f} ivr={m.get('mizu_ivr_sessions', -1):.0f}"
                f" reservations={s['reservations']} prompts_not_played={s['unplayed']}"
                f" p99_a_leg={p99_ms(lat)}ms (n={len(lat)}) {procs}")

    async def load(self) -> tuple[float, float]:
        capacity = sum(w["capacity"] // 2 for w in self.workers.values())
        self.target = target = max(1, capacity // 2)
        engines = ",".join(sorted({w["engine"] for w in self.workers.values()}))
        slots = "+".join(str(w["capacity"]) for w in self.workers.values())
        print(f"soak: {self.args.minutes} min, engine {engines}, slots {slots}"
              f" = {capacity} callbacks at once; load {target} at once", flush=True)
        # no more setups a second than the workers pace (15/s each; a margin for ANI)
        gap = 1.0 / (10 * len(self.workers))
        start = await self.sample()
        self.start_sample = start
        began = time.time()
        end = began + self.args.minutes * 60
        minute, last_refresh, next_at = 1, 0.0, 0.0
        tasks: set[asyncio.Task] = set()
        while True:
            now = time.time()
            if self.mizu.poll() is not None:
                self.problems.append(f"the controller died (exit {self.mizu.returncode})")
                break
            if now - last_refresh >= 0.25:
                self.refresh()
                last_refresh = now
            if now >= began + minute * 60:
                s = await self.sample()
                print(self.minute_line(minute, began, s), flush=True)
                minute += 1
                if now >= end:
                    break
                continue
            if now < end and now >= next_at and sum(1 for t in self.triggers if t.open) < target:
                task = asyncio.create_task(self.fire(self.next_trigger()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_at = now + gap
            await asyncio.sleep(0.02)
        if tasks:
            await asyncio.wait(tasks, timeout=20)
        return began, end

    async def drain(self) -> float:
        """Wait until every accepted callback ended and nothing is live; seconds waited."""
        began = time.time()
        while time.time() - began < DRAIN and self.mizu.poll() is None:
            self.refresh()
            m = await self.http.metrics()
            left = self.sql("SELECT count(*) FROM tb_reservations")[0][0]
            if (not any(t.open for t in self.triggers) and not left
                    and m.get("mizu_live_calls") == 0 and m.get("mizu_ivr_sessions") == 0):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # let the last legs' SIP transactions end
        self.refresh()
        return time.time() - began

    # -- the report --------------------------------------------------------------------------
    def growth(self, name: str, first: dict, last: dict) -> str:
        rss0, rss1 = first["procs"][name][0], last["procs"][name][0]
        done = last["ended"] - first["ended"]
        per = f"{(rss1 - rss0) / done * 1000:+.1f}" if done else "n/a"
        return f"{rss0:.1f}->{rss1:.1f} MB ({per} MB per 1,000 callbacks over {done})"

    async def report(self, began: float, end: float, drained: float) -> None:
        triggers = self.triggers
        accepted = [t for t in triggers if t.accepted]
        refused = [t for t in triggers if t.accepted is False]
        print(f"triggers {len(triggers)}: accepted {len(accepted)}, refused {len(refused)}"
              + (" (" + ", ".join(sorted({f"{t.source} {t.refusal}" for t in refused})) + ")"
                 if refused else ""), flush=True)
        for src in SOURCES:
            mine = [t for t in accepted if t.source == src]
            print(f"  {src}: accepted {len(mine)}, p99 trigger->A-leg"
                  f" {p99_ms([t.latency for t in mine if t.latency is not None])} ms", flush=True)
        unexpected = []
        for kind, (_, _, expected) in KINDS.items():
            mine = [t for t in accepted if t.kind == kind]
            outcomes: dict[tuple, int] = {}
            for t in mine:
                outcomes[(t.status, t.reason)] = outcomes.get((t.status, t.reason), 0) + 1
                if t.status in FINAL and (t.status, t.reason) != expected:
                    unexpected.append(t)
            text = ", ".join(f"{s or 'no row'}{f' ({r})' if r else ''} {c}"
                             for (s, r), c in sorted(outcomes.items(), key=lambda x: -x[1]))
            print(f"  B {kind}: {len(mine)} -> {text}", flush=True)
        if unexpected:
            print(f"  unexpected outcomes: {len(unexpected)}, e.g. "
                  + "; ".join(f"cb{t.cbid} {t.source} {t.status} {t.reason!r}"
                              for t in unexpected[:3]), flush=True)
        minutes = max(1, self.args.minutes)
        for label, lo in (("first", began), ("last", began + (minutes - 1) * 60)):
            lat = [t.latency for t in accepted
                   if lo <= t.sent < lo + 60 and t.latency is not None]
            print(f"p99_trigger_to_a_leg_ms {label}_minute {p99_ms(lat)} (n={len(lat)})",
                  flush=True)

        last = await self.sample()
        self.samples.pop()  # the drained sample is not a minute
        first = self.start_sample
        warm = self.samples[1] if len(self.samples) > 2 else first  # after minute 1
        for name in first["procs"]:
            print(f"rss {name} {self.growth(name, first, last)};"
                  f" after minute 1: {self.growth(name, warm, last)}", flush=True)
        print("open_fds " + " ".join(f"{k} {first['procs'][k][1]}->{last['procs'][k][1]}"
                                     for k in first["procs"]), flush=True)

        # what must be zero once the calls have drained
        m = last["metrics"]
        lines, _ = await self.command("calls")
        live_lines = [x for x in lines if x.startswith(("leg ", "session "))]
        capacity = sum(w["capacity"] for w in self.workers.values())
        left = {
            "live legs and sessions (console calls)": len(live_lines),
            "mizu_live_calls": int(m.get("mizu_live_calls", -1)),
            "mizu_ivr_sessions": int(m.get("mizu_ivr_sessions", -1)),
            "busy call slots (capacity - mizu_free_call_slots)":
                capacity - int(m.get("mizu_free_call_slots", -1)),
            "tb_reservations": self.sql("SELECT count(*) FROM tb_reservations")[0][0],
            "unsettled CDRs": self.sql("SELECT count(*) FROM tb_cdrs"
                                       " WHERE NOT settled OR endtime IS NULL")[0][0],
            "rows not final": self.sql("SELECT count(*) FROM tb_callbacks"
                                       " WHERE status NOT IN ('completed', 'failed')")[0][0],
            "failed rows without a reason": self.sql(
                "SELECT count(*) FROM tb_callbacks WHERE status = 'failed' AND reason = ''")[0][0],
            "callbacks lost": sum(1 for t in accepted if t.status not in FINAL),
        }
        print(f"left after {drained:.0f} s of drain: "
              + ", ".join(f"{k} {v}" for k, v in left.items()), flush=True)
        for what, count in left.items():
            if count:
                self.problems.append(f"{what}: {count}")
        if live_lines:
            print("  " + "\n  ".join(live_lines[:10]), flush=True)
        lost = [t for t in accepted if t.status not in FINAL][:5]
        for t in lost:
            print(f"  lost: {t.source} {t.anum} -> {t.bnum} row={t.cbid} status={t.status!r}",
                  flush=True)
        if not accepted:
            self.problems.append("no trigger was accepted")
        self.problems += self.sipp.check()
        log = self.log.read_text(errors="replace").splitlines()
        for name, found in (
                ("log_errors", [x for x in log if re.search(r"#(critical|error)\]|Traceback", x)]),
                ("prompts_not_played", [x for x in log if ": cannot play " in x])):
            print(f"{name} {len(found)}" + (f" (first: {found[0][:200]})" if found else ""),
                  flush=True)
            if found:
                self.problems.append(f"{name}: {len(found)}")
        print(f"run {time.time() - self.wall0:.0f} s", flush=True)

    async def stop(self) -> None:
        if self.console is not None:
            self.console.close()
        if getattr(self, "http", None) is not None:
            self.http.close()
        if self.db is not None:
            self.db.close()
        if self.mizu is not None:
            await asyncio.to_thread(stop_mizu, self.mizu)
        self.sipp.stop()
        if getattr(self, "sms", None) is not None:
            self.sms.stop()


async def main(args) -> int:
    folder = Path(tempfile.mkdtemp(prefix="mizu-soak-"))
    soak = Soak(args, folder)
    soak.wall0 = time.time()
    try:
        await soak.start()
        began, end = await soak.load()
        drained = await soak.drain()
        await soak.report(began, end, drained)
    finally:
        await soak.stop()
        if soak.mizu is not None and soak.mizu.returncode not in (0, -signal.SIGTERM):
            soak.problems.append(f"mizu exited with {soak.mizu.returncode} on SIGTERM")
        if args.keep:
            print(f"kept {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if soak.problems:
        print("SOAK PROBLEMS: " + "; ".join(dict.fromkeys(soak.problems)), flush=True)
        return 1 if args.check else 0
    print("soak ok", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="of load (default 10)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when anything is left over or a process died")
    parser.add_argument("--keep", action="store_true", help="keep the folder (mizu.log, SIPp logs)")
    sys.exit(asyncio.run(main(parser.parse_args())))
