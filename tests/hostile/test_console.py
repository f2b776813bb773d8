"""Hostile input at the telnet console of a running mizu: garbage lines before and after the
login, telnet IAC junk, NUL bytes and bytes that are not UTF-8, a 1 MB line, a flood of
lines never read, 200 idle connections and wrong passwords.

The real ``telnet`` client types what a person can type; raw sockets send the bytes it
never would. Raw peers connect from other loopback addresses (127.0.0.2 and up) so that
their failures and bans never touch 127.0.0.1, from which the real client checks after
each attack that the controller still answers ``status`` and that ``tb_callbacks`` is
empty. Random input comes from ``random.Random(seed)``: a run can be repeated exactly.
"""

from __future__ import annotations

import random
import re

import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from mizu.console.protocol import MAX_LINE, MAX_QUEUED
from tests.console.test_e2e import run, session, start
from tests.e2e.peers import RawClient, wait_until

SEED = 20260501
LOGIN_TIMEOUT = 5
IAC, SB, SE, NOP, WILL, WONT, DO, DONT = b"\xff", b"\xfa", b"\xf0", b"\xf1", b"\xfb", \
    b"\xfc", b"\xfd", b"\xfe"
TOO_LONG = f"ERROR: line longer than {MAX_LINE} characters".encode()


@pytest_twisted.async_yield_fixture
async def console(tmp_path, database):
    """mizu with a short login_timeout, the default 20 waiting logins, 4 failures ban."""
    root = await start(tmp_path, database,
                       console=f"login_timeout = {LOGIN_TIMEOUT}\nmax_unauthenticated = 20\n",
                       extra="[security]\nban_failures = 4\n")
    root.console_port = root.getServiceNamed("console").port
    yield root
    await root.stopService()


async def assert_alive(root, sql):
    """The controller answers status to a real telnet login from 127.0.0.1, and nothing
    was stored from the garbage."""
    t = await session(root)
    lines, final = await run(t, "status")
    assert final == "OK" and any(line.startswith("database ") for line in lines), lines
    t.close()
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0


class Peer(RawClient):
    """A raw TCP console client that can wait for what the server says."""

    def __init__(self):
        super().__init__()
        self._seen = 0

    async def expect(self, pattern: bytes, timeout: float = 10) -> bytes:
        """Everything received since the last ``expect`` up to and with ``pattern``."""
        async def found():
            while pattern not in self.received[self._seen:]:
                if self.closed.called:
                    raise AssertionError(f"closed before {pattern!r}: {self.received!r}")
                await task.deferLater(reactor, 0.01, lambda: None)
        await defer.ensureDeferred(found()).addTimeout(timeout, reactor)
        end = self.received.index(pattern, self._seen) + len(pattern)
        said, self._seen = self.received[self._seen:end], end
        return said

    async def ended(self, timeout: float = 10) -> bytes:
        """All that came until the server closed the connection."""
        await defer.Deferred.fromCoroutine(self._wait_closed()).addTimeout(timeout, reactor)
        return self.received[self._seen:]

    async def _wait_closed(self):
        await self.closed

    def send(self, data: bytes):
        self.transport.write(data)


async def connect(root, source: str = "127.0.0.2") -> Peer:
    peer = Peer()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", root.console_port,
                                  bindAddress=(source, 0))
    await connectProtocol(endpoint, peer)
    return peer


async def logged_in(root, source: str) -> Peer:
    peer = await connect(root, source)
    await peer.expect(b"Username: ")
    peer.send(b"admin\r\n")
    await peer.expect(b"Password: ")
    peer.send(b"s3cret\r\n")
    await peer.expect(b"mizu> ")
    return peer


async def answer(peer: Peer, line: bytes) -> bytes:
    """Send one command line; what came back up to the next prompt."""
    peer.send(line)
    return await peer.expect(b"mizu> ")


TELNET = re.compile(rb"\xff[\xfb-\xfe].|\xff\xfa.*?\xff\xf0|\xff[\xf0-\xfa]", re.S)


def final_line(said: bytes) -> str:
    """The OK/ERROR line ending a reply (telnet negotiation from the server left out)."""
    said = TELNET.sub(b"", said)
    lines = [x for x in said.decode("utf-8", "replace").replace("\r", "").split("\n")
             if x.startswith(("OK", "ERROR: "))]
    assert len(lines) == 1, said
    return lines[0]


# -- garbage lines --------------------------------------------------------------------

PRECISE = re.compile(r"^ERROR: (unknown command .+; type help|cannot parse the line: .+"
                     r"|wrong arguments; usage: .+|no setting named .+|no live call .+"
                     r"|A-number .+ is not a phone number .+|usage: .+|unknown command .+"
                     r"|.+ is not a setting name .+)$")
TYPABLE = "abcxyzQ0123456789 _-+=*/\\|.,;:?!@#$%^&()[]{}<>~`'\"äöü€漢字"
ARGUED = ("callback", "hangup", "config", "callbacks", "drain", "help", "status", "calls",
          "banned")


def garbage_line(rng: random.Random) -> str:
    """A line a person could type that is no valid command: random characters, or a
    command with random arguments (a non-digit keeps an A-number from being a number)."""
    words = ["".join(rng.choice(TYPABLE) for _ in range(rng.randint(1, 12)))
             for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.5:
        name = rng.choice(ARGUED)
        words = [name, "x" + words[0].replace('"', "").replace("'", "") + "~"] + words[1:]
    else:
        words[0] = "z" + words[0]
    return " ".join(words)


@pytest_twisted.ensureDeferred
async def test_garbage_lines_after_login_get_precise_errors(console, sql):
    """150 random lines in the real telnet client: each gets one precise ERROR line (no
    internal error), the session goes on, nothing is stored, tb_config is untouched."""
    rng = random.Random(SEED)
    settings_before = sql("SELECT count(*) FROM tb_config")
    t = await session(console)
    for _ in range(150):
        line = garbage_line(rng)
        _lines, final = await run(t, line)
        assert PRECISE.match(final), (line, final)
    assert (await run(t, "status"))[1] == "OK"
    t.close()
    assert sql("SELECT count(*) FROM tb_config") == settings_before
    await assert_alive(console, sql)


@pytest_twisted.ensureDeferred
async def test_raw_bytes_after_login_nul_invalid_utf8_and_cr_nul(console, sql):
    """NUL bytes, bytes that are not UTF-8 and control characters are part of a line that
    gets a precise error; CR NUL (Return on some clients) ends a line like CR LF."""
    peer = await logged_in(console, "127.0.0.2")
    assert final_line(await answer(peer, b"sta\x00tus\r\n")) == (
        "ERROR: unknown command 'sta\\x00tus'; type help")
    assert final_line(await answer(peer, b"\xc3\x28\xa0\xa1 \xf0\x28\x8c\r\n")) == (
        "ERROR: unknown command '\ufffd(\ufffd\ufffd'; type help")
    assert final_line(await answer(peer, b"\x01\x02\x1b[A\x7f\r\n")) == (
        "ERROR: unknown command '\\x01\\x02\\x1b[A\\x7f'; type help")
    assert final_line(await answer(peer, b"callback \x00491\r\n")).startswith(
        "ERROR: A-number '\\x00491' is not a phone number")
    assert final_line(await answer(peer, b"status\r\x00")) == "OK"
    assert final_line(await answer(peer, b"\r\n")) == "OK"
    peer.transport.loseConnection()
    await assert_alive(console, sql)


def iac_junk(rng: random.Random) -> bytes:
    """One random telnet command sequence that carries no application data."""
    kind = rng.randrange(6)
    if kind == 0:  # IAC and a byte that is no telnet command
        return IAC + bytes([rng.randrange(0, 0xF0)])
    if kind == 1:  # IAC SE, IAC NOP, IAC AYT, ... outside any subnegotiation
        return IAC + bytes([rng.randrange(0xF0, 0xFA)])
    if kind == 2:  # a negotiation about a random option
        return IAC + rng.choice((WILL, WONT, DO, DONT)) + bytes([rng.randrange(256)])
    if kind == 3:  # a subnegotiation with random content (IAC doubled inside)
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        return IAC + SB + body.replace(IAC, IAC + IAC) + IAC + SE
    if kind == 4:  # an empty subnegotiation
        return IAC + SB + IAC + SE
    return IAC + NOP


def sprinkle(rng: random.Random, text: bytes) -> bytes:
    """``text`` with random IAC sequences between its bytes."""
    out = b""
    for i in range(len(text)):
        out += text[i:i + 1] + b"".join(iac_junk(rng) for _ in range(rng.randint(0, 2)))
    return out


@pytest_twisted.ensureDeferred
async def test_telnet_iac_junk_is_ignored(console, sql):
    """Random IAC sequences (unknown commands, negotiations, subnegotiations, empty ones)
    inside the user name, the password and the commands are stripped by the telnet layer:
    the login works and each command gets its answer. A lone IAC at the end of a read waits
    for its command byte in the next one."""
    rng = random.Random(SEED)
    for round_ in range(5):
        peer = await connect(console, f"127.0.0.{10 + round_}")
        await peer.expect(b"Username: ")
        peer.send(sprinkle(rng, b"admin") + b"\r\n")
        await peer.expect(b"Password: ")
        peer.send(sprinkle(rng, b"s3cret") + b"\r\n")
        await peer.expect(b"mizu> ")
        for _ in range(10):
            assert final_line(await answer(peer, sprinkle(rng, b"status") + b"\r\n")) == "OK"
        assert final_line(await answer(peer, sprinkle(rng, b"frob") + b"\r\n")) == (
            "ERROR: unknown command 'frob'; type help")
        peer.send(b"status\r\n" + IAC)  # the IAC's command byte comes later
        assert final_line(await peer.expect(b"mizu> ")) == "OK"
        await task.deferLater(reactor, 0.05, lambda: None)
        assert final_line(await answer(peer, b"\x00status\r\n")) == "OK"  # IAC NUL: ignored
        peer.send(IAC)
        await task.deferLater(reactor, 0.05, lambda: None)
        assert final_line(await answer(peer, NOP + b"status\r\n")) == "OK"
        peer.transport.loseConnection()
    await assert_alive(console, sql)


@pytest_twisted.ensureDeferred
async def test_subnegotiation_without_end_is_refused(console, sql):
    """IAC SB without IAC SE, before or after the login: past 4096 bytes the server says
    why and closes; it never buffers the subnegotiation without bound."""
    before = await connect(console, "127.0.0.2")
    await before.expect(b"Username: ")
    before.send(IAC + SB + b"\x18" + b"x" * 20_000)
    said = await before.ended()
    assert b"ERROR: telnet subnegotiation longer than 4096 bytes: connection closed" in said
    after = await logged_in(console, "127.0.0.3")
    after.send(IAC + SB + b"\x1f" + b"status\r\n" * 2000)
    said = await after.ended()
    assert b"ERROR: telnet subnegotiation longer than 4096 bytes: connection closed" in said
    assert b"database " not in said  # the swallowed "status" lines never ran
    await assert_alive(console, sql)


# -- big input ------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_megabyte_line_before_login_is_refused(console, sql):
    """A 1 MB user name: one error line, then the connection is closed."""
    peer = await connect(console, "127.0.0.2")
    await peer.expect(b"Username: ")
    peer.send(b"a" * 1_000_000)
    said = await peer.ended()
    assert said == b"\r\n" + TOO_LONG + b": connection closed\r\n", said[:200]
    await wait_until(lambda: console.getServiceNamed("console").gate.pending == 0,
                     what="the refused connection released")
    await assert_alive(console, sql)


@pytest_twisted.ensureDeferred
async def test_a_megabyte_line_after_login_is_one_error_and_its_tail_never_runs(console, sql):
    """A 1 MB line whose last 16 bytes are a valid command: one ERROR for the whole line,
    its tail is not run (nothing stored), and the session goes on."""
    peer = await logged_in(console, "127.0.0.2")
    peer.send(b" " * 1_000_000 + b"callback 4917011\r\n" + b"status\r\n")
    said = await peer.expect(b"mizu> ", timeout=20)
    assert final_line(said) == TOO_LONG.decode()
    said = await peer.expect(b"mizu> ")
    assert final_line(said) == "OK" and b"database " in said
    assert said.count(b"ERROR") == 0
    await task.deferLater(reactor, 0.3, lambda: None)
    assert b"pending" not in peer.received  # no "callback <id> pending"
    peer.transport.loseConnection()
    await assert_alive(console, sql)


@pytest_twisted.ensureDeferred
async def test_lines_sent_without_reading_the_answers_are_bounded(console, sql):
    """A peer pastes 20,000 commands and never reads: the server stops reading while its
    answers wait, then refuses the backlog with one error and closes the session."""
    peer = await logged_in(console, "127.0.0.2")
    peer.transport.pauseProducing()  # read nothing: the server's send buffer fills up
    peer.send(b"help\r\n" * 20_000)
    await task.deferLater(reactor, 1.0, lambda: None)
    peer.transport.resumeProducing()
    said = await peer.ended(timeout=20)
    assert (f"ERROR: more than {MAX_QUEUED} lines waiting for an answer: session closed"
            .encode()) in said
    assert said.count(b"\r\nOK\r\n") < 20_000
    await assert_alive(console, sql)


# -- connections and logins -----------------------------------------------------------

async def open_many(root, count: int, sources: list[str], rate: float = 200) -> list[Peer]:
    peers = []
    for i in range(count):
        peers.append(await connect(root, sources[i % len(sources)]))
        await task.deferLater(reactor, 1 / rate, lambda: None)
    return peers


REFUSED = b"Connection refused: too many connections waiting to log in; try again later\r\n"
REFUSED_HERE = b"Connection refused: too many connections from this address waiting to log in\r\n"


@pytest_twisted.ensureDeferred
async def test_200_idle_connections_are_bounded_then_time_out(console, sql):
    """200 idle connections from 40 addresses: 20 (max_unauthenticated) get the prompt,
    the other 180 one refusal line and a close; the 20 are closed after login_timeout;
    then a real login works and nothing is left open."""
    gate = console.getServiceNamed("console").gate
    readers = len(reactor.getReaders())
    sources = [f"127.0.1.{i}" for i in range(1, 41)]
    peers = await open_many(console, 200, sources)
    await wait_until(lambda: all(p.received for p in peers), what="every greeting")
    admitted = [p for p in peers if p.received.startswith(b"Username: ")]
    refused = [p for p in peers if p not in admitted]
    assert len(admitted) == 20 and len(refused) == 180
    for p in refused:
        assert await p.ended() == REFUSED
    for p in admitted:
        said = await p.ended(timeout=LOGIN_TIMEOUT + 5)
        assert said == b"Username: \r\nLogin timed out after %d s\r\n" % LOGIN_TIMEOUT
    assert gate.pending == 0
    await assert_alive(console, sql)
    await wait_until(lambda: len(reactor.getReaders()) <= readers, what="sockets closed")


@pytest_twisted.ensureDeferred
async def test_idle_connections_from_one_address_and_their_release(console, sql):
    """200 connections from one address: 5 wait, 195 are refused; once the 5 go away by
    themselves their places are free again at once."""
    gate = console.getServiceNamed("console").gate
    peers = await open_many(console, 200, ["127.0.0.2"])
    await wait_until(lambda: sum(p.closed.called for p in peers) >= 195, what="refusals")
    waiting = [p for p in peers if not p.closed.called]
    assert len(waiting) == 5
    assert all(p.received == REFUSED_HERE for p in peers if p.closed.called)
    for p in waiting:
        p.transport.loseConnection()
    await wait_until(lambda: gate.pending == 0, what="released")
    again = await connect(console, "127.0.0.2")
    assert await again.expect(b"Username: ") == b"Username: "
    again.transport.loseConnection()
    await assert_alive(console, sql)


@pytest_twisted.ensureDeferred
async def test_wrong_and_empty_passwords_ban_only_that_address(console, sql):
    """Empty user names, empty and wrong passwords and garbage bytes each fail after the
    pause with a precise line; the 4th failure bans 127.0.0.2 (not 127.0.0.1), whose next
    connection is refused before any prompt even with the right password."""
    peer = await connect(console, "127.0.0.2")
    for user, password in ((b"", b""), (b"admin", b""), (b"\xff\xfe\x00\xc3(", b"\x00" * 9)):
        await peer.expect(b"Username: ")
        started = reactor.seconds()
        peer.send(user + b"\r\n")
        await peer.expect(b"Password: ")
        peer.send(password + b"\r\n")
        said = await peer.expect(b"Authentication failed")
        assert reactor.seconds() - started >= 0.9  # the pause after each failure
        assert b"mizu> " not in said
    said = await peer.ended()
    assert said == b": too many failures\r\n"
    second = await connect(console, "127.0.0.2")
    await second.expect(b"Username: ")
    second.send(b"admin\r\nwrong\r\n")
    assert (await second.ended()).endswith(b"Authentication failed: address banned\r\n")
    third = await connect(console, "127.0.0.2")
    assert await third.ended() == b"Connection refused: address banned\r\n"
    t = await session(console)  # 127.0.0.1 is not banned
    lines, final = await run(t, "banned")
    assert final == "OK" and lines[-1] == "1 ban(s) in force"
    assert lines[0].startswith("console 127.0.0.2 banned for ")
    assert (await run(t, "delbanned 127.0.0.2"))[1] == "OK"
    t.close()
    (await logged_in(console, "127.0.0.2")).transport.loseConnection()
    await assert_alive(console, sql)
