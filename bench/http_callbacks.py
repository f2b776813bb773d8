"""Stored callback requests per second through the HTTP API, and latency at half that rate.

Usage: python bench/http_callbacks.py [--seconds 10] [--connections 16] [--profile PREFIX]
                                      [--guards]

Needs ``wrk`` (Debian: ``apt-get install wrk``); installs nothing itself. Starts
``twistd -n mizu`` as its own process (``[sip] workers = 0``, so requests are stored and
stay pending; the embedded PostgreSQL in a temporary folder; the HTTP abuse limits and the
``[fraud]`` guards off; with ``--guards`` the default guards but no hourly limit per user),
adds 4 end users by SQL, and loads it over loopback from other processes. For each path,
``json`` (``POST /api/v1/callbacks`` with HTTP Basic, 202) and ``mvapi``
(``GET /mvapireq/?apientry=callback``, 200), every request with its own A-number:

1. saturation: wrk (``bench/http_callbacks.lua``), ``--connections`` keep-alive connections
   for ``--seconds`` after a 2 s warm-up; the requests answered with a status below 400 per
   second. ``tb_callbacks`` must then have gained one row per request wrk sent that was not
   refused (those still in flight when wrk stops are stored too).
2. latency: open loop at half the saturation rate for ``--seconds``, from this process
   (asyncio, 32 raw HTTP/1.1 keep-alive connections); each request's time runs from when
   it was due, so a server falling behind shows in the figures.

Prints one line per figure: ``json_stored_per_second``, ``json_p50_ms_at_half``,
``json_p99_ms_at_half``, ``json_mizu_cpu_us_per_request`` and
``json_postgres_cpu_us_per_request`` (CPU time of the mizu process and of PostgreSQL during
saturation, per request sent), the same for ``mvapi_``, and ``stored_rows_match yes|no``
(``detail`` lines say what was counted). The whole run takes about a minute.

The server, its PostgreSQL and the load generator share the machine's cores (2 where this
was written), so the figures are lower than with the load on another host would be, and
anything else running at the same time lowers them more; the CPU figures vary less.

``--profile PREFIX`` records each saturation phase with ``py-spy`` (when installed) into
``PREFIX-json.svg`` and ``PREFIX-mvapi.svg``; py-spy takes CPU too, so such a run's rates
are lower.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.peers import free_port  # noqa: E402

# The benches measure throughput: the fraud guards would refuse one user's thousands.
FRAUD_OFF = ("[fraud]\nmax_calls_per_user = 0\ncallbacks_per_hour = 0\nanumber_per_hour = 0\n"
             "daily_spend = 0\n")
# --guards: the default guards (each request's A-number and spend are counted), but the
# bench's 4 users may send thousands an hour (a real one is refused after 30).
GUARDS = "[fraud]\ncallbacks_per_hour = 0\n"

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
LUA = ROOT / "bench" / "http_callbacks.lua"
USERS = [(f"bench{n}", f"pw-bench-{n}") for n in range(1, 5)]
BNUM = "4420111"
WARM_UP = 2


def start_mizu(folder: Path, fraud: str = FRAUD_OFF) -> tuple[subprocess.Popen, int]:
    """``twistd -n mizu`` without SIP on a free loopback port; returns it once ready."""
    port = free_port()
    config = folder / "mizu.ini"
    config.write_text("[sip]\nworkers = 0\n"
                      f"[http]\nlisten = tcp:{port}:interface=127.0.0.1\n"
                      "address_rate = 0\nuser_rate = 0\nmax_connections = 0\n"
                      f"[console]\nlisten = tcp:{free_port()}:interface=127.0.0.1\n"
                      "[console.users]\nadmin = x\n" + fraud)
    log = folder / "mizu.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with open(log, "wb") as out:
        proc = subprocess.Popen([*TWISTD, "-n", "--pidfile=", "mizu", "--config", str(config),
                                 "--datadir", str(folder / "var")], cwd=folder, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    began = time.monotonic()
    while not re.search(r"mizu \S+ ready", log.read_text()):
        if proc.poll() is not None or time.monotonic() - began > 120:
            proc.kill()
            raise SystemExit(f"twistd did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc, port


def stop_mizu(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


class Rows:
    """Counts ``tb_callbacks`` rows on the embedded server's Unix socket."""

    def __init__(self, folder: Path):
        self._db = psycopg2.connect(host=str(folder / "var" / "pgdata"), user="postgres",
                                    dbname="postgres")
        self._db.autocommit = True

    def add_users(self) -> None:
        with self._db.cursor() as cur:
            for name, password in USERS:
                cur.execute("INSERT INTO tb_user (username, password, credit)"
                            " VALUES (%s, %s, 1000)", (name, password))

    def count(self) -> int:
        with self._db.cursor() as cur:
            cur.execute("SELECT count(*) FROM tb_callbacks")
            return cur.fetchone()[0]

    def settled(self) -> int:
        """The count once it stops growing (requests still in flight get stored)."""
        last, deadline = self.count(), time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.count()
            if now == last:
                return now
            last = now
        return last


def server_processes(proc: subprocess.Popen, folder: Path) -> dict[str, list]:
    """mizu's process, and PostgreSQL's postmaster with its backends (pool connections)."""
    postmaster = int((folder / "var" / "pgdata" / "postmaster.pid").read_text().split()[0])
    pg = psutil.Process(postmaster)
    return {"mizu": [psutil.Process(proc.pid)], "postgres": [pg, *pg.children(recursive=True)]}


def cpu_seconds(processes: dict[str, list]) -> dict[str, float]:
    """User and system CPU seconds used so far, per group of processes."""
    used = {}
    for name, group in processes.items():
        used[name] = 0.0
        for p in group:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            used[name] += t.user + t.system
    return used


def wrk(port: int, mode: str, prefix: str, seconds: int, connections: int) -> dict[str, int]:
    """One wrk run; the counters its Lua ``done()`` prints."""
    creds = [f"{u}:{p}:{base64.b64encode(f'{u}:{p}'.encode()).decode()}" for u, p in USERS]
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(LUA), f"http://127.0.0.1:{port}", "--", mode, prefix,
                          *creds], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in re.findall(r"^(\w+) (\d+)$", out, re.M)}


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, its answer's status."""

    def __init__(self):
        self.transport = None
        self._buffer = b""
        self._answer: asyncio.Future | None = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError("the server closed the connection"))

    def send(self, data: bytes) -> asyncio.Future:
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._answer

    def data_received(self, data):
        self._buffer += data
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self._buffer[:head_end].lower()
        if b"transfer-encoding: chunked" in head:
            end = self._buffer.find(b"\r\n0\r\n\r\n", head_end)
            if end < 0:
                return
            end += 7
        else:
            length = re.search(rb"content-length: *(\d+)", head)
            end = head_end + 4 + (int(length.group(1)) if length else 0)
            if len(self._buffer) < end:
                return
        self._buffer = self._buffer[end:]
        self._answer.set_result(int(head[9:12]))


def request_bytes(mode: str, anum: str, n: int) -> bytes:
    user, password = USERS[n % len(USERS)]
    if mode == "json":
        body = f'{{"anum": "{anum}", "bnum": "{BNUM}"}}'.encode()
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        return (f"POST /api/v1/callbacks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Basic {basic}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return (f"GET /mvapireq/?apientry=callback&authid={user}&authpwd={password}&anum={anum}"
            f"&bnum={BNUM} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()


async def paced(port: int, mode: str, prefix: str, rate: float, seconds: int,
                connections: int = 32) -> tuple[list[float], int, int]:
    """Open loop at ``rate``/s: (latencies in s from each request's due time, successes,
    failures)."""
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        _, conn = await loop.create_connection(Connection, "127.0.0.1", port)
        idle.put_nowait(conn)
    success = 202 if mode == "json" else 200
    latencies: list[float] = []
    counts = [0, 0]

    async def one(n: int, due: float) -> None:
        conn = await idle.get()
        try:
            status = await conn.send(request_bytes(mode, f"{prefix}{n:07d}", n))
        except ConnectionError:
            status = 0
        latencies.append(loop.time() - due)
        counts[status != success] += 1
        if not conn.transport.is_closing():
            idle.put_nowait(conn)

    total, began, pending = int(rate * seconds), loop.time() + 0.05, []
    for n in range(total):
        due = began + n / rate
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        pending.append(asyncio.ensure_future(one(n, due)))
    await asyncio.gather(*pending)
    while not idle.empty():
        idle.get_nowait().transport.close()
    return latencies, counts[0], counts[1]


def percentile(values: list[float], fraction: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * fraction))] * 1000


def profiler(pid: int, prefix: str | None, mode: str, seconds: int):
    """``py-spy record`` of the server over the saturation phase, if asked and installed."""
    if prefix is None:
        return None
    if shutil.which("py-spy") is None:
        print("py-spy is not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    return subprocess.Popen(["py-spy", "record", "--nonblocking", "--pid", str(pid),
                             "--duration", str(seconds), "--rate", "200",
                             "-o", f"{prefix}-{mode}.svg"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(proc, folder: Path, port: int, rows: Rows, mode: str, digit: str, args) -> bool:
    """Both phases of one path; prints its figures; returns whether the rows matched."""
    wrk(port, mode, f"40{digit}0", WARM_UP, args.connections)
    before = rows.settled()
    processes = server_processes(proc, folder)
    spy = profiler(proc.pid, args.profile, mode, args.seconds)
    cpu_before = cpu_seconds(processes)
    run = wrk(port, mode, f"40{digit}1", args.seconds, args.connections)
    cpu = cpu_seconds(processes)
    if spy is not None:
        spy.wait()
    gained = rows.settled() - before
    stored = run["completed"] - run["status_errors"]
    rate = stored / (run["duration_us"] / 1e6)
    expected = run["sent"] - run["status_errors"]
    saturated_ok = gained == expected and run["socket_errors"] == 0
    print(f"{mode}_stored_per_second {rate:.0f}", flush=True)
    for name in processes:  # what each stored request costs, whatever else the host runs
        used = (cpu[name] - cpu_before[name]) / max(1, run["sent"]) * 1e6
        print(f"{mode}_{name}_cpu_us_per_request {used:.0f}", flush=True)
    print(f"detail {mode} saturation: {args.connections} connections {args.seconds} s,"
          f" sent={run['sent']} answered={run['completed']} success={stored}"
          f" non_success={run['status_errors']} socket_errors={run['socket_errors']}"
          f" rows_gained={gained} (expected {expected}),"
          f" p50={run['p50_us'] / 1000:.1f} ms p99={run['p99_us'] / 1000:.1f} ms", flush=True)

    before = rows.settled()
    latencies, ok, failed = asyncio.run(
        paced(port, mode, f"40{digit}2", rate / 2, args.seconds))
    gained = rows.settled() - before
    print(f"{mode}_p50_ms_at_half {percentile(latencies, 0.5):.1f}", flush=True)
    print(f"{mode}_p99_ms_at_half {percentile(latencies, 0.99):.1f}", flush=True)
    print(f"detail {mode} at {rate / 2:.0f}/s open loop: requests={len(latencies)}"
          f" success={ok} non_success={failed} rows_gained={gained}"
          f" max={max(latencies) * 1000:.1f} ms", flush=True)
    return saturated_ok and gained == ok and failed == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per phase (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="for wrk (default 16)")
    parser.add_argument("--profile", metavar="PREFIX", help="py-spy SVGs of saturation")
    parser.add_argument("--guards", action="store_true",
                        help="check the [fraud] guards on every request (off by default)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/http_callbacks.py needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="mizu-bench-") as tmp:
        folder = Path(tmp)
        proc, port = start_mizu(folder, GUARDS if args.guards else FRAUD_OFF)
        try:
            rows = Rows(folder)
            rows.add_users()
            match = [measure(proc, folder, port, rows, mode, digit, args)
                     for mode, digit in (("json", "1"), ("mvapi", "2"))]
            print(f"stored_rows_match {'yes' if all(match) else 'no'}", flush=True)
        finally:
            stop_mizu(proc)


if __name__ == "__main__":
    main()
