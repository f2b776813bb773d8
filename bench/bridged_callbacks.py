"""Bridged callbacks one mizu node holds at once, on the SIP engine of this Python.

Usage: python bench/bridged_callbacks.py [--target 400] [--step 100] [--hold 10]
                                         [--sample 10] [--workers 2] [--phones 4] [--keep]

Runs on whichever pjsua2 the running interpreter has: the global python3 with the PyPI
wheel, or a venv where ``tools/build-engine`` installed the built engine (the workers are
spawned with the same interpreter). ``bench/sip_capacity.py`` runs it for both engines.

Starts ``twistd -n mizu`` as its own process (``--workers`` SIP workers, ``[sip] max_calls``
2,000, the embedded PostgreSQL in a temporary folder, the ``[fraud]`` guards off, short tone
prompts, ``callbackdelay`` 0) and SIPp phones on loopback, all running bench/sipp/bridged_uas.xml
(answer, hold until mizu's BYE): ``--phones`` SIPp processes for the A phones and as many
for B (one echo socket takes about 20,000 packets/s before it drops some), which echo every
RTP packet back to its sender (``-rtp_echo``), and one for the sampled A phones, which
answer with the media address of an RTP probe in this process. The probe answers each packet mizu
sends with one of its own whose payload is a constant byte; once A and B are bridged, that
payload goes A -> mizu -> B, is echoed by B, and comes back B -> mizu -> A, so the probe
counting it proves RTP flowing both ways through the bridge.

Callbacks are queued by SQL (``tb_callbacks`` rows, source ``db``, naming their payer, A and
B) in steps of ``--step``; each step must be bridged (row status ``bridged``) before the
next. The ramp stops at ``--target`` (0: the node's capacity), at the node's capacity (the
workers' call slots from the console ``status``, 2 a callback), or when a callback fails, a
worker restarts or a step makes no progress for 30 s. The calls are then held for
``--hold`` seconds while CPU, RSS and the probe's counters are measured, then hung up by
the console ``hangup``; what must return to zero is checked.

Prints one figure a line, each prefixed by the engine (``wheel_`` or ``built_``):
``bridged_callbacks``, ``node_callback_capacity``, ``stop_reason``, ``setup_seconds`` (first
row queued -> last one bridged), ``setups_per_second``, ``controller_rss_mb``,
``controller_cpu_percent``, ``worker_rss_mb`` and ``worker_cpu_percent`` (the largest
worker's first, each one after), ``rtp_both_ways`` (sampled calls whose probe got its payload
back / sampled calls), ``rtp_probe_packets_per_second`` (per sampled call, sent and received
back), ``hangup_seconds``, ``left_after_hangup`` (live legs and sessions, reservations,
unsettled CDRs, rows not final, busy call slots: all must be 0), ``log_errors``; lines
starting with ``#`` are details. Needs ``sipp`` (Debian sip-tester) and ``telnet``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from http_callbacks import FRAUD_OFF, stop_mizu  # noqa: E402
from smpp_inbound import TWISTD, postmaster, wait_for  # noqa: E402

from mizu import __version__  # noqa: E402
from tests.e2e.peers import free_port  # noqa: E402
from tests.e2e.test_callback import short_prompts  # noqa: E402
from tests.telnetclient import TelnetSession  # noqa: E402

SCENARIO = HERE / "sipp" / "bridged_uas.xml"
USERS = [(f"bridge{n}", f"pw-bridge-{n}") for n in range(1, 9)]
PATTERN = 0x15  # the probe's payload byte (G.711 u-law, loud, not silence)
STALL = 30.0  # seconds a step may go without one more callback bridged
STATUS = re.compile(r"sip worker (\d+) pid=(\d+) port=(\d+) calls=(\d+)/(\d+)"
                    r"(?: engine=(\S+))?( down)?")


class Probe(asyncio.DatagramProtocol):
    """The sampled A phones' media: answers every RTP packet from mizu with one carrying
    ``PATTERN``, and counts per mizu socket what came in, what went out and how many
    packets came in carrying ``PATTERN`` (A's audio back through B's echo)."""

    def __init__(self):
        self.transport = None
        self.peers: dict[tuple, list[int]] = {}  # addr -> [received, sent, pattern back]
        self.payload = bytes([PATTERN]) * 160

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        peer = self.peers.get(addr)
        if peer is None:
            peer = self.peers[addr] = [0, 0, 0, len(self.peers) + 1]
        peer[0] += 1
        if len(data) >= 12 + 160 and data[12:].count(PATTERN) >= 144:
            peer[2] += 1
        seq, ssrc = peer[1] & 0xFFFF, 0x4D495A00 + peer[3]
        header = struct.pack("!BBHII", 0x80, 0, seq, (peer[1] * 160) & 0xFFFFFFFF, ssrc)
        self.transport.sendto(header + self.payload, addr)
        peer[1] += 1

    def snapshot(self) -> dict[tuple, tuple[int, int, int]]:
        return {addr: tuple(p[:3]) for addr, p in self.peers.items()}


class Phones:
    """The SIPp phones: A (echo), sampled A (media at the probe) and B (echo)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.binary = shutil.which("sipp")
        if self.binary is None:
            raise SystemExit("bench/bridged_callbacks.py needs SIPp: apt-get install sip-tester")
        self.procs: dict[str, subprocess.Popen] = {}
        self.media_ports: set[int] = set()

    def serve(self, name: str, rtp_port: int | None = None) -> int:
        port, media = free_port(), free_port(3)
        self.media_ports.add(media)
        argv = [self.binary, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(port),
                "-mi", "127.0.0.1", "-mp", str(media), "-nostdin", "-aa", "-l", "10000",
                "-key", "rtp_port", str(media if rtp_port is None else rtp_port),
                "-trace_err", "-error_file", str(self.folder / f"{name}-errors.log")]
        if rtp_port is None:
            argv.append("-rtp_echo")
        self.procs[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                            stderr=open(self.folder / f"{name}.err", "wb"))
        return port

    def dead(self) -> list[str]:
        return [f"SIPp {name} exited with {p.returncode}"
                for name, p in self.procs.items() if p.poll() is not None]

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def config_text(folder: Path, ports: dict[str, int], workers: int) -> str:
    return (f"[sip]\nlisten = 127.0.0.1:{ports['sip']}\nworkers = {workers}\n"
            "max_calls = 2000\nshutdown_grace = 5\n"
            f"[http]\nlisten = tcp:{ports['http']}:interface=127.0.0.1\n"
            f"[console]\nlisten = tcp:{ports['console']}:interface=127.0.0.1\n"
            "[console.users]\nadmin = bench\n"
            f"[ivr]\nsounds = {folder / 'sounds'}\n"
            "[callback]\nring_timeout = 20\nmax_call_time = 3600\npoll_interval = 2\n"
            "max_attempts = 1\n" + FRAUD_OFF)


def cpu_times(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
            out[name] = t.user + t.system
        except psutil.NoSuchProcess:
            out[name] = 0.0
    return out


def udp_counters() -> dict[str, int]:
    """The host's UDP datagrams in and out, and those dropped (/proc/net/snmp)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split()[1:] for line in f if line.startswith("Udp:")]
    values = dict(zip(rows[0], map(int, rows[1]), strict=True))
    return {k: values.get(k, 0) for k in ("InDatagrams", "OutDatagrams", "RcvbufErrors",
                                          "InErrors")}


def udp_drops(groups: dict[str, set[int]]) -> dict[str, int]:
    """Datagrams dropped so far by the live UDP sockets on each group of local ports
    (``other``: the rest, mizu's workers' RTP among them), from /proc/net/udp."""
    out = dict.fromkeys([*groups, "other"], 0)
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            name = next((g for g, ports in groups.items() if port in ports), "other")
            out[name] += int(fields[-1])
    return out


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


class Bench:
    def __init__(self, args, folder: Path):
        self.args, self.folder = args, folder
        self.phones = Phones(folder)
        self.mizu: subprocess.Popen | None = None
        self.db = None
        self.console: TelnetSession | None = None
        self.probe: Probe | None = None
        self.queued = 0
        self.sampled: list[int] = []
        self.out: list[tuple[str, str]] = []

    def emit(self, key: str, value) -> None:
        print(f"{self.engine}_{key} {value}", flush=True)

    def sql(self, query: str, params=()) -> list[tuple]:
        with self.db.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    async def command(self, line: str) -> tuple[list[str], str]:
        return await asyncio.to_thread(self.console.command, line)

    async def workers(self) -> dict[int, dict]:
        lines, _ = await self.command("status")
        found = {}
        for line in lines:
            m = STATUS.match(line)
            if m:
                found[int(m.group(1))] = {
                    "pid": int(m.group(2)), "calls": int(m.group(4)),
                    "capacity": int(m.group(5)), "engine": m.group(6) or "?",
                    "down": bool(m.group(7))}
        return found

    # -- set-up ------------------------------------------------------------------------
    async def start(self) -> None:
        f = self.folder
        short_prompts(f / "sounds")
        loop = asyncio.get_running_loop()
        probe_port = free_port(2)
        self.probe_transports = []
        for port in (probe_port, probe_port + 1):  # RTP, and RTCP to drop
            transport, protocol = await loop.create_datagram_endpoint(
                Probe, local_addr=("127.0.0.1", port))
            self.probe_transports.append(transport)
            if self.probe is None:
                self.probe = protocol
            else:
                protocol.datagram_received = lambda data, addr: None
        n = self.args.phones = max(1, min(10, self.args.phones))
        a = [self.phones.serve(f"a{k}") for k in range(n)]
        a_probe = self.phones.serve("a-probe", rtp_port=probe_port)
        b = [self.phones.serve(f"b{k}") for k in range(n)]
        ports = {"sip": free_port(self.args.workers), "http": free_port(),
                 "console": free_port()}
        (f / "mizu.ini").write_text(config_text(f, ports, self.args.workers))
        self.log = f / "mizu.log"
        with open(self.log, "wb") as out:
            self.mizu = subprocess.Popen(
                [*TWISTD, "-n", "--pidfile=", "mizu", "--config", str(f / "mizu.ini"),
                 "--datadir", str(f / "var")], cwd=f, stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])))
        await asyncio.to_thread(wait_for, self.log, self.mizu, f"mizu {__version__} ready")
        self.db = psycopg2.connect(postmaster(f / "var").get_uri())
        self.db.autocommit = True
        self.sql("INSERT INTO tb_user (username, password, credit) VALUES "
                 + ", ".join(["(%s, %s, 10000000)"] * len(USERS)),
                 [x for user in USERS for x in user])
        self.userids = [r[0] for r in self.sql("SELECT id FROM tb_user WHERE username LIKE"
                                               " 'bridge%%' ORDER BY id")]
        self.sql("INSERT INTO tb_rates (prefix, price, initblock, increment) VALUES"
                 " ('4917', 0.01, 1, 1), ('4919', 0.01, 1, 1), ('44', 0.05, 1, 1)")
        gateway = "sip:{{number}}@127.0.0.1:{}"
        routes = [(f"4917{k}", gateway.format(port)) for k, port in enumerate(a)]
        routes += [(f"4420{k}", gateway.format(port)) for k, port in enumerate(b)]
        routes.append(("4919", gateway.format(a_probe)))
        self.sql("INSERT INTO tb_routes (prefix, gateway) VALUES "
                 + ", ".join(["(%s, %s)"] * len(routes)), [x for r in routes for x in r])
        self.console = TelnetSession(ports["console"], timeout=30)
        self.console.child.delaybeforesend = None  # pexpect's 50 ms a line, else
        if self.console.login("admin", "bench") != b"prompt":
            raise SystemExit("cannot log in to the console")
        for line in ("config callbackdelay 0", "reload"):
            lines, final = await self.command(line)
            if final != "OK":
                raise SystemExit(f"console {line}: {final} {lines}")
        began = time.monotonic()
        while True:
            self.status = await self.workers()
            if self.status and all(w["capacity"] and not w["down"]
                                   for w in self.status.values()):
                break
            if time.monotonic() - began > 60:
                raise SystemExit(f"the SIP workers did not come up: {self.status}")
            await asyncio.sleep(0.5)
        self.first_pids = {i: w["pid"] for i, w in self.status.items()}
        engines = sorted({w["engine"] for w in self.status.values()})
        self.engine_name = ",".join(engines)
        self.engine = self.args.prefix or ("wheel" if all(e.startswith("wheel") for e in engines)
                                           else "built")

    # -- the ramp ----------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return dict(self.sql("SELECT status, count(*) FROM tb_callbacks GROUP BY status"))

    def queue(self, n: int, total: int) -> None:
        """Queue ``n`` more callbacks; every ``stride``-th one's A phone is the probe."""
        sample = max(1, min(self.args.sample, total))
        stride = max(1, total // sample)
        rows = []
        for i in range(self.queued, self.queued + n):
            probe = i % stride == 0 and len(self.sampled) < sample
            if probe:
                self.sampled.append(i)
            k = i % self.args.phones
            anum = f"4919{i:07d}" if probe else f"4917{k}{i:07d}"
            rows += [self.userids[i % len(self.userids)], anum, f"4420{k}{i:07d}"]
        self.sql("INSERT INTO tb_callbacks (userid, anum, bnum, source) VALUES "
                 + ", ".join(["(%s, %s, %s, 'db')"] * n), rows)
        self.queued += n

    async def ramp(self) -> tuple[int, float, str]:
        capacity = sum(w["capacity"] // 2 for w in self.status.values())
        self.capacity = capacity
        target = min(self.args.target or capacity, capacity)
        step = max(1, min(self.args.step, target))
        began = time.monotonic()
        reason = "target" if target == (self.args.target or capacity) else "capacity"
        while self.queued < target:
            n = min(step, target - self.queued)
            t0 = time.monotonic()
            self.queue(n, target)
            last, last_at = -1, time.monotonic()
            while True:
                c = self.counts()
                bridged = c.get("bridged", 0)
                ended = c.get("failed", 0) + c.get("completed", 0)
                if bridged != last:
                    last, last_at = bridged, time.monotonic()
                if ended:
                    why = self.sql("SELECT status, reason, count(*) FROM tb_callbacks WHERE"
                                   " status IN ('failed', 'completed') GROUP BY 1, 2")
                    print(f"# callbacks ended during the ramp: {why}", flush=True)
                    return bridged, time.monotonic() - began, "failure"
                if bridged >= self.queued:
                    break
                restarted = await self.restarted()
                if restarted or self.phones.dead() or self.mizu.poll() is not None:
                    print(f"# {restarted or self.phones.dead() or 'mizu died'}", flush=True)
                    return bridged, time.monotonic() - began, "failure"
                if time.monotonic() - last_at > STALL:
                    print(f"# step stalled: {c}", flush=True)
                    return bridged, time.monotonic() - began, "stalled"
                await asyncio.sleep(0.1)
            print(f"# step: {self.queued} bridged, +{n} in {time.monotonic() - t0:.1f} s",
                  flush=True)
        return self.counts().get("bridged", 0), time.monotonic() - began, reason

    async def restarted(self) -> list[str]:
        self.status = await self.workers()
        return [f"sip worker {i} restarted or down" for i, w in self.status.items()
                if w["pid"] != self.first_pids.get(i) or w["down"]]

    # -- holding -----------------------------------------------------------------------
    async def hold(self) -> None:
        await asyncio.sleep(3.0)  # the last IVR prompts and jitter buffers settle
        pids = {"controller": self.mizu.pid} | {f"w{i}": w["pid"]
                                                for i, w in sorted(self.status.items())}
        pids |= {f"sipp-{n}": p.pid for n, p in self.phones.procs.items()}
        cpu0, probe0, t0 = cpu_times(pids), self.probe.snapshot(), time.monotonic()
        udp0 = udp_counters()
        groups = {"sipp_media": self.phones.media_ports,
                  "probe": {t.get_extra_info("sockname")[1] for t in self.probe_transports}}
        drops0 = udp_drops(groups)
        await asyncio.sleep(self.args.hold)
        cpu1, probe1, t1 = cpu_times(pids), self.probe.snapshot(), time.monotonic()
        udp1 = udp_counters()
        drops1 = udp_drops(groups)
        span = t1 - t0
        cpu = {k: (cpu1[k] - cpu0[k]) / span * 100 for k in pids}
        rss = {k: rss_mb(pid) for k, pid in pids.items()}
        workers = [k for k in pids if k.startswith("w")]
        self.emit("controller_rss_mb", f"{rss['controller']:.1f}")
        self.emit("controller_cpu_percent", f"{cpu['controller']:.1f}")
        self.emit("worker_rss_mb", f"{max(rss[w] for w in workers):.1f} ("
                  + ", ".join(f"{w} {rss[w]:.1f}" for w in workers) + ")")
        self.emit("worker_cpu_percent", f"{max(cpu[w] for w in workers):.1f} ("
                  + ", ".join(f"{w} {cpu[w]:.1f}" for w in workers) + ")")
        print("# sipp cpu percent " + ", ".join(f"{k} {cpu[k]:.1f}" for k in pids
                                                 if k.startswith("sipp")), flush=True)
        print("# UDP on this host while holding, per second: "
              + ", ".join(f"{k} {(udp1[k] - udp0[k]) / span:.0f}" for k in udp0), flush=True)
        print("# UDP drops while holding, per second, by socket: "
              + ", ".join(f"{k} {(drops1[k] - drops0[k]) / span:.0f}" for k in drops0),
              flush=True)
        lines, _ = await self.command("status")
        print("# status while holding: " + "; ".join(x for x in lines if "sip worker" in x),
              flush=True)
        # The probe: per mizu A-leg socket of a sampled call, packets in, out, pattern back.
        ok, sent, back = 0, [], []
        for addr, (rx1, tx1, pat1) in probe1.items():
            rx0, tx0, pat0 = probe0.get(addr, (0, 0, 0))
            if rx1 - rx0 == 0 and tx1 - tx0 == 0:
                continue  # a socket of a call from before (none here) or RTCP
            sent.append((tx1 - tx0) / span)
            back.append((pat1 - pat0) / span)
            if pat1 - pat0 > 0 and rx1 - rx0 > 0 and tx1 - tx0 > 0:
                ok += 1
        n = self.sql("SELECT count(*) FROM tb_callbacks WHERE status = 'bridged'"
                     " AND anum LIKE '4919%%'")[0][0]
        self.emit("rtp_both_ways", f"{ok}/{n}")
        if sent:
            self.emit("rtp_probe_packets_per_second",
                      f"sent {sum(sent) / len(sent):.1f} back {sum(back) / len(back):.1f}"
                      f" (mean per sampled call, {len(sent)} calls; 50 is every 20 ms)")
        c = self.counts()
        print(f"# rows after holding: {c}", flush=True)
        self.held_after = c.get("bridged", 0)

    # -- hanging up --------------------------------------------------------------------
    async def hangup(self) -> None:
        t0 = time.monotonic()
        lines, _ = await self.command("calls")
        keys = [m.group(1) for x in lines if (m := re.match(r"session (\S+) ", x))]
        refused = 0
        for key in keys:
            _, final = await self.command(f"hangup {key}")
            refused += final != "OK"
        left = {}
        while time.monotonic() - t0 < 60:
            lines, _ = await self.command("calls")
            live = [x for x in lines if x.startswith(("leg ", "session "))]
            status = await self.workers()
            left = {
                "live": len(live),
                "reservations": self.sql("SELECT count(*) FROM tb_reservations")[0][0],
                "unsettled_cdrs": self.sql("SELECT count(*) FROM tb_cdrs"
                                           " WHERE NOT settled OR endtime IS NULL")[0][0],
                "rows_not_final": self.sql("SELECT count(*) FROM tb_callbacks WHERE status"
                                           " NOT IN ('completed', 'failed')")[0][0],
                "busy_slots": sum(w["calls"] for w in status.values()),
            }
            if not any(left.values()):
                break
            await asyncio.sleep(0.25)
        took = time.monotonic() - t0
        self.emit("hangup_seconds", f"{took:.1f} ({len(keys)} hung up, {refused} refused)")
        self.emit("left_after_hangup", f"{sum(left.values())} ("
                  + ", ".join(f"{k} {v}" for k, v in left.items()) + ")")
        ends = self.sql("SELECT status, reason, count(*) FROM tb_callbacks GROUP BY 1, 2")
        print(f"# rows at the end: {ends}", flush=True)
        cdrs = self.sql("SELECT leg, result, count(*) FROM tb_cdrs GROUP BY 1, 2 ORDER BY 1, 2")
        print(f"# CDRs: {cdrs}", flush=True)

    def log_errors(self) -> None:
        log = self.log.read_text(errors="replace").splitlines()
        found = [x for x in log if re.search(r"#(critical|error)\]|Traceback", x)]
        self.emit("log_errors", f"{len(found)}" + (f" (first: {found[0][:200]})" if found
                                                  else ""))
        warnings: dict[str, int] = {}
        for x in log:
            if "#warn]" in x:
                kind = re.sub(r"\b(cb|c)\d+\b", r"\1N", x.split("#warn] ", 1)[1])[:100]
                warnings[kind] = warnings.get(kind, 0) + 1
        for kind, count in sorted(warnings.items(), key=lambda w: -w[1])[:5]:
            print(f"# mizu warning x{count}: {kind}", flush=True)
        for name in self.phones.procs:
            errors = self.folder / f"{name}-errors.log"
            if errors.exists() and errors.stat().st_size:
                text = errors.read_text(errors="replace")
                print(f"# sipp {name} errors: {text.count('sipp:') or len(text.splitlines())}"
                      f" lines, first: {text.strip().splitlines()[0][:200]}", flush=True)

    async def run(self) -> None:
        await self.start()
        print(f"# engine {self.engine_name}, python {sys.executable}, slots "
              + "+".join(str(w["capacity"]) for w in self.status.values()), flush=True)
        bridged, seconds, reason = await self.ramp()
        self.bridged_n = bridged
        self.emit("bridged_callbacks", bridged)
        self.emit("node_callback_capacity", self.capacity)
        self.emit("stop_reason", reason)
        self.emit("setup_seconds", f"{seconds:.1f}")
        self.emit("setups_per_second", f"{bridged / seconds:.1f}" if seconds else "-")
        await self.hold()
        if self.held_after != bridged:
            print(f"# {bridged - self.held_after} callbacks ended while held", flush=True)
        await self.hangup()
        self.log_errors()

    async def stop(self) -> None:
        if self.console is not None:
            self.console.close()
        if self.db is not None:
            self.db.close()
        if self.mizu is not None:
            await asyncio.to_thread(stop_mizu, self.mizu)
        self.phones.stop()
        for transport in getattr(self, "probe_transports", []):
            transport.close()


async def main(args) -> int:
    folder = Path(tempfile.mkdtemp(prefix="mizu-bridged-"))
    bench = Bench(args, folder)
    began = time.time()
    try:
        await bench.run()
    finally:
        await bench.stop()
        print(f"# run {time.time() - began:.0f} s", flush=True)
        if args.keep:
            print(f"# kept {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=400,
                        help="bridged callbacks to reach (0: the node's capacity)")
    parser.add_argument("--step", type=int, default=100, help="callbacks queued at a time")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds measured held")
    parser.add_argument("--sample", type=int, default=10, help="calls whose RTP is probed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--phones", type=int, default=4,
                        help="SIPp processes for the A phones, and as many for B (at most 10)")
    parser.add_argument("--prefix", default="", help="figure prefix (default: the engine)")
    parser.add_argument("--keep", action="store_true", help="keep the folder (mizu.log)")
    sys.exit(asyncio.run(main(parser.parse_args())))
