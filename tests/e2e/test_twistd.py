"""``twistd -n mizu`` as an operator runs it: embedded PostgreSQL, console, SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.peers import free_port, worker_capacity
from tests.telnetclient import TelnetSession

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]



def start(tmp_path, *args, config=None):
    """Start twistd -n mizu in tmp_path with stdout and stderr in tmp_path/out.log."""
    if config is not None:
        (tmp_path / "mizu.ini").write_text(config)
        args = ("--config", str(tmp_path / "mizu.ini")) + args
    log = open(tmp_path / "out.log", "wb")
    return subprocess.Popen([*TWISTD, "-n", "--pidfile=", "mizu", *args], cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)


def wait_for(tmp_path, proc, text, timeout=60.0) -> float:
    """Seconds until ``text`` appears in the log; fails if the process exits first."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        out = (tmp_path / "out.log").read_text()
        if text in out:
            return time.monotonic() - began
        if proc.poll() is not None:
            pytest.fail(f"twistd exited with {proc.returncode}:\n{out}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{text!r} not seen in {timeout} s:\n{(tmp_path / 'out.log').read_text()}")


def console_config(port, users="admin = pw\n", sip="[sip]\nworkers = 0\n"):
    return (f"{sip}[http]\nlisten = tcp:0:interface=127.0.0.1\n"
            f"[console]\nlisten = tcp:{port}:interface=127.0.0.1\n"
            f"[console.users]\n{users}")


def test_twistd_runs_on_embedded_postgres_and_stops_on_sigterm(tmp_path):
    """A fresh datadir: PostgreSQL is embedded, the console answers, SIGTERM stops all."""
    port, sip_port = free_port(), free_port()
    sip = f"[sip]\nlisten = 127.0.0.1:{sip_port}\nworkers = 1\n"
    proc = start(tmp_path, "--datadir", str(tmp_path / "var"),
                 config=console_config(port, sip=sip))
    try:
        wait_for(tmp_path, proc, "mizu 0.1.0 ready")
        t = TelnetSession(port)
        assert t.login("admin", "pw") == b"prompt"
        lines, final = t.command("status")
        assert final == "OK"
        assert any(line.startswith("database embedded in " + str(tmp_path / "var" / "pgdata"))
                   for line in lines)
        worker = [line for line in lines if line.startswith("sip worker 0 ")]
        capacity = worker_capacity(1000)  # the default max_calls, all on one worker
        assert len(worker) == 1 and f"port={sip_port} calls=0/{capacity} engine=" in worker[0]
        assert t.command("calls") == (["0 live leg(s)"], "OK")
        assert t.command("reload") == ([], "OK")
        t.close()
        proc.send_signal(signal.SIGTERM)
        # twistd shuts down cleanly, then re-raises the signal, as systemd expects
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    out = (tmp_path / "out.log").read_text()
    assert "embedded PostgreSQL stopped" in out and "Server Shut Down." in out
    assert not (tmp_path / "var" / "pgdata" / "postmaster.pid").exists()
    # the same datadir starts again with the schema already in place
    proc = start(tmp_path, "--datadir", str(tmp_path / "var"), config=console_config(port))
    try:
        wait_for(tmp_path, proc, "mizu 0.1.0 ready")
        assert "schema migrated" not in (tmp_path / "out.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()


def test_broken_config_exits_listing_every_error(tmp_path):
    """A broken file stops twistd before it starts, naming each problem."""
    proc = start(tmp_path, config="[sip]\nworkers = x\n[console]\nlisten = nope\n")
    assert proc.wait(timeout=30) != 0
    out = (tmp_path / "out.log").read_text()
    assert "the configuration has errors" in out
    assert "[sip] workers: expected a whole number" in out
    assert "[console] listen: not a Twisted endpoint description" in out


def test_unreachable_database_exits_naming_the_dsn(tmp_path):
    """--db pointing at nothing: non-zero exit, the DSN shown without its password."""
    proc = start(tmp_path, "--db", "postgresql://mizu:hunter2@127.0.0.1:1/mizu")
    assert proc.wait(timeout=30) != 0
    out = (tmp_path / "out.log").read_text()
    assert "cannot connect to database postgresql://mizu:***@127.0.0.1:1/mizu" in out
    assert "hunter2" not in out


def test_schema_too_new_exits_non_zero(tmp_path, database, sql):
    """A database migrated by a newer mizu: a clear message and a non-zero exit."""
    sql("CREATE TABLE mizu_schema (version integer PRIMARY KEY, applied timestamptz)")
    sql("INSERT INTO mizu_schema VALUES (999, now())")
    proc = start(tmp_path, "--db", database, config=console_config(free_port()))
    assert proc.wait(timeout=60) != 0
    out = (tmp_path / "out.log").read_text()
    assert "mizu cannot start" in out and "schema is version 999" in out
    assert os.path.exists(tmp_path / "out.log")
