"""The console end to end: the real telnet client against a running service tree."""

import os
import re
import socket

import pytest_twisted
from twisted.internet import reactor, threads

from mizu.config import load_config
from mizu.store.migrations import LATEST
from mizu.tap import build
from tests.running import running_mizu
from tests.telnetclient import TelnetSession


def write_config(path, users="admin = s3cret\n", extra="", sip="[sip]\nworkers = 0\n",
                 console="", http="tcp:0:interface=127.0.0.1"):
    """A test ini: ``console`` lines go into [console], ``extra`` sections at the end."""
    path.write_text(
        f"{sip}[http]\nlisten = {http}\n[console]\nlisten = tcp:0:interface=127.0.0.1\n{console}"
        f"[console.users]\n{users}{extra}"
    )


async def start(tmp_path, database, **config):
    """A started mizu (store + console) on the test database, from ``write_config(**config)``."""
    path = tmp_path / "mizu.ini"
    write_config(path, **config)
    return await running_mizu(path, database, tmp_path / "var")


@pytest_twisted.async_yield_fixture
async def server(tmp_path, database):
    """A started mizu with the default console limits; stopped afterwards."""
    root = await start(tmp_path, database)
    yield root
    await root.stopService()


@pytest_twisted.async_yield_fixture
async def guarded(tmp_path, database):
    """A started mizu with small limits: 4 failures ban, 3 may wait at the login, 5 s each."""
    root = await start(tmp_path, database,
                       console="login_timeout = 5\nmax_unauthenticated = 3\n",
                       extra="[security]\nban_failures = 4\n")
    yield root
    await root.stopService()


def in_thread(f, *args):
    """Blocking telnet work runs in a thread so the in-process server keeps answering."""
    return threads.deferToThread(f, *args)


async def session(server, user="admin", password="s3cret"):
    """A real telnet client logged in to ``server``, at the prompt."""
    t = TelnetSession(server.getServiceNamed("console").port)
    assert await in_thread(t.login, user, password) == b"prompt"
    return t


def run(t, line):
    """Run one command line in session ``t``: (reply lines, final line)."""
    return in_thread(t.command, line)


@pytest_twisted.ensureDeferred
async def test_login_and_status(server):
    """A configured user logs in; status names the database and ends with OK."""
    t = await session(server)
    lines, final = await run(t, "status")
    assert final == "OK"
    assert any(line.startswith("mizu 0.1.0 pid=") for line in lines)
    assert any(line.startswith("database external") and f"schema={LATEST}" in line
               and "connections=4/4" in line for line in lines)
    t.close()


@pytest_twisted.ensureDeferred
async def test_wrong_password_three_times_closes(server):
    """Wrong credentials are refused, each after a pause; the third failure closes the
    connection."""
    t = TelnetSession(server.getServiceNamed("console").port)
    started = reactor.seconds()
    assert await in_thread(t.login, "admin", "wrong") == b"again"
    assert await in_thread(t.login, "nobody", "s3cret") == b"again"
    assert await in_thread(t.login, "admin", "wrong") == b"closed"
    assert b"Authentication failed: too many failures" in t.child.before
    assert reactor.seconds() - started >= 3
    t.close()


@pytest_twisted.ensureDeferred
async def test_unknown_command_and_wrong_arguments(server):
    """Bad lines get a precise ERROR and the session goes on."""
    t = await session(server)
    assert await run(t, "frobnicate") == ([], "ERROR: unknown command 'frobnicate'; type help")
    assert await run(t, "status now") == (
        [], "ERROR: wrong arguments; usage: status -- the server, its database and its "
            "SIP workers")
    assert await run(t, 'config "unterminated') == (
        [], "ERROR: cannot parse the line: No closing quotation")
    assert await run(t, "config nosuch") == ([], "ERROR: no setting named 'nosuch'")
    assert (await run(t, ""))[1] == "OK"
    assert (await run(t, "status"))[1] == "OK"
    t.close()


@pytest_twisted.ensureDeferred
async def test_help_lists_commands(server):
    """help lists every command with its usage; help <cmd> shows one."""
    t = await session(server)
    lines, final = await run(t, "help")
    assert final == "OK"
    assert [line.split()[0] for line in lines] == [
        "banned", "callback", "callbacks", "calls", "config", "delbanned", "drain", "hangup",
        "help", "quit", "reload", "status"]
    assert await run(t, "help reload") == (
        ["reload -- re-read config, tb_config, rates, routes, campaigns, scripts; calls go on"],
        "OK")
    t.close()


@pytest_twisted.ensureDeferred
async def test_config_set_and_get_persisted(server, sql):
    """config <name> <value> writes tb_config and applies at once; bad values change nothing."""
    t = await session(server)
    assert await run(t, "config callbackdelay") == (["callbackdelay = 1"], "OK")
    assert await run(t, "config callbackdelay 2.5") == (["callbackdelay = 2.5"], "OK")
    assert sql("SELECT value FROM tb_config WHERE name = 'callbackdelay'") == [("2.5",)]
    assert str(server.settings.callbackdelay) == "2.5"
    assert await run(t, "config ivrbilling 4") == (
        [], "ERROR: ivrbilling: expected one of 0, 1, 2, 5, got 4")
    assert sql("SELECT count(*) FROM tb_config WHERE name = 'ivrbilling'") == [(0,)]
    assert await run(t, "config greeting hello world") == (["greeting = hello world"], "OK")
    lines, final = await run(t, "config")
    assert "anumberhandling = 3" in lines and "greeting = hello world" in lines
    t.close()


@pytest_twisted.ensureDeferred
async def test_reload_applies_new_users_and_settings(server, sql):
    """reload re-reads the file and tb_config; new accounts work at the next login."""
    write_config(server.config_path, users="admin = s3cret\noperator = n3w\n")
    sql("INSERT INTO tb_config (name, value) VALUES ('freeivraccess', '2')")
    t = await session(server)
    assert await run(t, "reload") == ([], "OK")
    assert server.settings.freeivraccess == 2
    (await session(server, "operator", "n3w")).close()
    t.close()


@pytest_twisted.ensureDeferred
async def test_reload_with_broken_file_changes_nothing(server, sql):
    """A broken file or bad tb_config row: ERROR listing each problem, all kept as it was."""
    t = await session(server)
    write_config(server.config_path, users="admin = changed\n", sip="[sip]\nworkers = lots\n")
    sql("INSERT INTO tb_config (name, value) VALUES ('anumberhandling', '9')")
    lines, final = await run(t, "reload")
    assert final == ("ERROR: [sip] workers: expected a whole number, got 'lots'; "
                     "tb_config anumberhandling: expected one of 0, 1, 2, 3, got 9")
    assert server.settings.anumberhandling == 3
    assert (await run(t, "status"))[1] == "OK"  # the process lives on
    (await session(server, "admin", "s3cret")).close()  # the old password still works
    t.close()


@pytest_twisted.ensureDeferred
async def test_reload_reports_restart_required(server):
    """Changing a listen address is reported, not half-applied."""
    write_config(server.config_path, http="tcp:9090")
    server.config_path.write_text(server.config_path.read_text().replace(
        "tcp:0:interface=127.0.0.1", "tcp:2424:interface=127.0.0.1"))
    t = await session(server)
    assert await run(t, "reload") == (["restart required: [console] listen changed",
                                 "restart required: [http] listen changed"], "OK")
    t.close()


@pytest_twisted.ensureDeferred
async def test_quit_ends_the_session(server):
    """quit answers OK and the server closes the connection."""
    t = await session(server)
    assert await run(t, "quit") == (["bye"], "OK")
    assert await in_thread(t.closed)
    t.close()


@pytest_twisted.ensureDeferred
async def test_first_start_creates_admin_password(tmp_path, database):
    """With no users configured, admin's random password is written once, mode 0600."""
    path = tmp_path / "mizu.ini"
    path.write_text("[sip]\nworkers = 0\n[http]\nlisten = tcp:0:interface=127.0.0.1\n"
                    "[console]\nlisten = tcp:0:interface=127.0.0.1\n")
    datadir = tmp_path / "var"

    def load():
        return load_config(str(path), dsn=database, datadir=str(datadir))

    root = build(load(), load, reactor)
    root.startService()
    try:
        await root.whenReady()
        secret = datadir / "admin-password"
        assert oct(os.stat(secret).st_mode & 0o777) == "0o600"
        password = secret.read_text().strip()
        assert len(password) >= 16
        (await session(root, "admin", password)).close()
    finally:
        await root.stopService()
    # a second start keeps the same password
    root = build(load(), load, reactor)
    assert root.getServiceNamed("console")._users == {"admin": password}


def raw_login(port, user, password):
    """A client like nc that never answers telnet negotiation."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        received = b""
        for expected, reply in ((b"Username: ", user), (b"Password: ", password),
                                (b"mizu> ", "status")):
            while expected not in received:
                chunk = s.recv(4096)
                if not chunk:
                    return received
                received += chunk
            received = received.split(expected, 1)[1]
            s.sendall(reply.encode() + b"\r\n")
        while b"\r\nOK\r\n" not in received:
            received += s.recv(4096)
        return received


@pytest_twisted.ensureDeferred
async def test_client_ignoring_negotiation_still_logs_in(server):
    """A raw TCP client that ignores WILL ECHO is not left hanging at Password:."""
    out = await in_thread(raw_login, server.getServiceNamed("console").port, "admin", "s3cret")
    assert b"database external" in out


@pytest_twisted.ensureDeferred
async def test_bcrypt_hashed_password(server):
    """An account configured with a bcrypt hash logs in with its password, not the hash."""
    import bcrypt

    hashed = bcrypt.hashpw(b"h4shed", bcrypt.gensalt(rounds=4)).decode()
    write_config(server.config_path, users=f"admin = s3cret\nauditor = {hashed}\n")
    t = await session(server)
    assert await run(t, "reload") == ([], "OK")
    (await session(server, "auditor", "h4shed")).close()
    wrong = TelnetSession(server.getServiceNamed("console").port)
    assert await in_thread(wrong.login, "auditor", hashed) == b"again"
    wrong.close()
    t.close()


BAN_LINE = re.compile(r"^console 127\.0\.0\.1 banned for (8[5-9][0-9]|900) s more$")


@pytest_twisted.ensureDeferred
async def test_failed_logins_ban_the_address_until_delbanned(guarded):
    """4 wrong passwords over two connections ban 127.0.0.1: a new connection is refused
    at once even with the right password. A session logged in before stays; banned lists
    the ban, delbanned lifts it, and the right password works again."""
    port = guarded.getServiceNamed("console").port
    admin = await session(guarded)
    first = TelnetSession(port)
    for expected in (b"again", b"again", b"closed"):
        assert await in_thread(first.login, "admin", "wrong") == expected
    first.close()
    second = TelnetSession(port)
    assert await in_thread(second.login, "admin", "wrong") == b"closed"
    assert b"Authentication failed: address banned" in second.child.before
    second.close()
    refused = TelnetSession(port)
    assert await in_thread(refused.login, "admin", "s3cret") == b"refused"
    assert b"Connection refused: address banned" in refused.child.before
    assert b"Username:" not in refused.child.before
    refused.close()

    lines, final = await run(admin, "banned")
    assert final == "OK" and lines[1:] == ["1 ban(s) in force"]
    assert BAN_LINE.match(lines[0]), lines
    lines, final = await run(admin, "status")
    assert "bans 1 console=1" in lines
    lines, final = await run(admin, "delbanned 127.0.0.1")
    assert final == "OK" and lines[1:] == ["1 ban(s) lifted"]
    assert BAN_LINE.match(lines[0]), lines
    assert await run(admin, "banned") == (["0 ban(s) in force"], "OK")
    (await session(guarded)).close()
    admin.close()


def raw_connection(port):
    """A bare TCP connection; returns it once the server said something."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s, s.recv(4096)


def read_to_end(s):
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := s.recv(4096):
        received += chunk
    s.close()
    return received


@pytest_twisted.ensureDeferred
async def test_unauthenticated_connections_are_limited(guarded):
    """With max_unauthenticated = 3, a 4th and 5th connection waiting at the login get one
    line and are closed, while a logged-in session keeps working; the waiting ones are
    closed after login_timeout, which frees their places."""
    port = guarded.getServiceNamed("console").port
    admin = await session(guarded)
    waiting = []
    for _ in range(3):
        s, greeting = await in_thread(raw_connection, port)
        assert greeting == b"Username: "
        waiting.append(s)
    for _ in range(2):
        s, said = await in_thread(raw_connection, port)
        said += await in_thread(read_to_end, s)
        assert said == (b"Connection refused: too many connections waiting to log in; "
                        b"try again later\r\n")
    lines, final = await run(admin, "status")
    assert final == "OK"
    assert any(line.startswith("console ") and "unauthenticated=3/3" in line
               for line in lines), lines
    for s in waiting:
        assert await in_thread(read_to_end, s) == b"\r\nLogin timed out after 5 s\r\n"
    (await session(guarded)).close()
    assert (await run(admin, "status"))[1] == "OK"
    admin.close()


@pytest_twisted.ensureDeferred
async def test_callback_commands_store_list_and_refuse(server, sql):
    """callback stores a request and prints its id; callbacks lists it; bad input is refused."""
    sql("INSERT INTO tb_user (username, password, credit) VALUES ('alice', 'wonder', 5)")
    t = await session(server)
    lines, final = await run(t, "callback 4917011 +4420111 user=alice")
    assert final == "OK" and len(lines) == 1
    cbid = int(re.fullmatch(r"callback (\d+) pending", lines[0]).group(1))
    row = sql("SELECT anum, bnum, source, status, userid IS NOT NULL FROM tb_callbacks "
              "WHERE id = %s", (cbid,))
    assert row == [("4917011", "+4420111", "console", "pending", True)]
    lines, final = await run(t, "callbacks all")
    assert final == "OK" and lines[0].startswith(f"{cbid} pending 4917011 -> +4420111")
    assert lines[-1] == "1 callback(s)"
    assert await run(t, "callback 49170x1") == (
        [], "ERROR: A-number '49170x1' is not a phone number (digits, optionally after + or 00,"
            " at most 20)")
    assert await run(t, "callback 4917011 user=nobody") == ([], "ERROR: no user 'nobody'")
    assert await run(t, "callbacks everything") == ([], "ERROR: usage: callbacks [pending|all]")
    assert await run(t, "hangup 12345") == ([], "ERROR: no live call '12345'")
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 1
    t.close()


@pytest_twisted.ensureDeferred
async def test_drain_and_cancel(server):
    """drain says how many calls are left and status shows it; drain cancel ends it."""
    t = await session(server)
    assert await run(t, "drain") == (["draining: 0 live call(s) left; no new calls"], "OK")
    lines, final = await run(t, "status")
    assert "draining: 0 live call(s) left; no new calls" in lines
    assert await run(t, "drain now") == ([], "ERROR: usage: drain [cancel]")
    assert await run(t, "drain cancel") == (["taking calls again"], "OK")
    lines, final = await run(t, "status")
    assert not [line for line in lines if line.startswith("draining")]
    t.close()
