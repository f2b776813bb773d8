"""Seconds from launching ``twistd -n mizu`` to "ready", on a fresh datadir and on a reused one.

The server starts as configured by default: embedded PostgreSQL, two SIP workers, console.

Usage: python bench/startup.py   (prints one line: startup fresh=<s> second=<s>)
"""

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.peers import free_port  # noqa: E402

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]



def start_once(folder: Path) -> float:
    """Launch, wait for the ready line, stop with SIGTERM; returns seconds to ready."""
    config = folder / "mizu.ini"
    config.write_text(f"[sip]\nlisten = 127.0.0.1:{free_port(2)}\nworkers = 2\n"
                      "[http]\nlisten = tcp:0:interface=127.0.0.1\n"
                      f"[console]\nlisten = tcp:{free_port()}:interface=127.0.0.1\n"
                      "[console.users]\nadmin = x\n")
    log = folder / "out.log"
    began = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([*TWISTD, "-n", "--pidfile=", "mizu", "--config", str(config),
                                 "--datadir", str(folder / "var")], cwd=folder,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        while "mizu 0.1.0 ready" not in log.read_text():
            if proc.poll() is not None or time.monotonic() - began > 120:
                raise SystemExit(f"twistd did not start:\n{log.read_text()}")
            time.sleep(0.01)
        return time.monotonic() - began
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = start_once(Path(tmp))
        second = start_once(Path(tmp))
    print(f"startup fresh={fresh:.2f}s second={second:.2f}s")


if __name__ == "__main__":
    main()
