"""The console's login defences in memory: a fake clock and string transports."""

import re

from twisted.cred import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from mizu.bans import Bans
from mizu.config import Config, ConsoleConfig
from mizu.console.login import LoginGate, LoginLimits
from mizu.console.service import ConsoleService

IAC_COMMAND = re.compile(rb"\xff[\xfb-\xfe].")


class FakeServer:
    """The root service's part the console uses: bans and a status report."""

    def __init__(self, clock, failures=4):
        self.bans = Bans(clock, failures=failures, window=60, duration=900)

    def status_lines(self):
        """A one-line report."""
        return ["mizu test"]


class Client:
    """One in-memory connection to the console's factory."""

    def __init__(self, factory, host="192.0.2.1", port=40000):
        cls = IPv6Address if ":" in host else IPv4Address
        address = cls("TCP", host, port)
        self.protocol = factory.buildProtocol(address)  # the telnet layer
        self.transport = StringTransport(peerAddress=address)
        self.protocol.makeConnection(self.transport)
        self.login = self.protocol.protocol

    def send(self, *lines):
        """Type each line, as telnet sends it (CR LF)."""
        for line in lines:
            self.protocol.dataReceived(line.encode() + b"\r\n")

    def output(self) -> str:
        """What the server wrote so far (telnet negotiation removed), then forget it."""
        text = IAC_COMMAND.sub(b"", self.transport.value()).decode().replace("\r\n", "\n")
        self.transport.clear()
        return text

    @property
    def closing(self) -> bool:
        """Whether the server closed (or is closing) the connection."""
        return self.transport.disconnecting

    def lose(self):
        """The TCP connection ends (StringTransport does not report it by itself)."""
        self.protocol.connectionLost(Failure(ConnectionError("gone")))


def console(clock=None, failures=4, **settings):
    """A console service over a fake server, its clock, and its connection factory."""
    clock = clock or Clock()
    server = FakeServer(clock, failures)
    config = Config(console=ConsoleConfig(users={"admin": "s3cret"}, **settings))
    service = ConsoleService(server, config, clock)
    return server, service, service.makeFactory(), clock


def logged_in(factory, host="192.0.2.1"):
    """A connection from ``host`` logged in as admin, at the prompt."""
    client = Client(factory, host)
    client.send("admin", "s3cret")
    assert client.output().endswith("mizu> ")
    return client


def test_failed_password_is_answered_after_a_second():
    """A wrong password gets its answer and the next prompt only after 1 s; lines typed
    meanwhile are not taken as another try."""
    _, _, factory, clock = console()
    client = Client(factory)
    assert client.output() == "Username: "
    client.send("admin", "wrong")
    assert client.output() == "Password: "
    client.send("admin", "s3cret")  # typed during the pause: ignored
    clock.advance(0.9)
    assert client.output() == ""
    clock.advance(0.1)
    assert client.output() == "\nAuthentication failed\nUsername: "
    assert client.login.failures == 1 and not client.closing


def test_third_failure_closes_after_the_pause():
    """Three failed tries per connection; the third closes it, also after the pause."""
    _, _, factory, clock = console()
    client = Client(factory)
    for _ in range(3):
        client.send("admin", "wrong")
        clock.advance(1)
    assert client.output().endswith("\nAuthentication failed: too many failures\n")
    assert client.closing


def test_leaving_during_the_pause_cancels_it():
    """A client that hangs up while its failure is pending leaves no timer behind."""
    _, service, factory, clock = console()
    client = Client(factory)
    client.send("nobody", "wrong")
    client.lose()
    assert clock.getDelayedCalls() == []
    assert service.gate.pending == 0


def test_login_timeout():
    """A connection not logged in within login_timeout is told so and closed; one that
    logged in is not affected by it."""
    _, _, factory, clock = console(login_timeout=30)
    slow = Client(factory)
    quick = logged_in(factory)
    clock.advance(29.9)
    assert not slow.closing
    clock.advance(0.1)
    assert slow.output() == "Username: \nLogin timed out after 30 s\n"
    assert slow.closing and not quick.closing
    slow.send("admin", "s3cret")  # too late: never logs in
    assert slow.output() == ""


def test_idle_timeout():
    """A logged-in session with no input for idle_timeout is closed with an ERROR line;
    each line of input restarts the count."""
    _, _, factory, clock = console(idle_timeout=300)
    client = logged_in(factory)
    clock.advance(299)
    client.send("status")
    assert client.output() == "mizu test\nOK\nmizu> "
    clock.advance(299)
    assert not client.closing
    clock.advance(1)
    assert client.output() == "\nERROR: no input for 300 s: session closed\n"
    assert client.closing


def test_idle_timeout_zero_is_off():
    """idle_timeout = 0 keeps an idle session open."""
    _, _, factory, clock = console(idle_timeout=0)
    client = logged_in(factory)
    clock.advance(86400 * 7)
    assert not client.closing and clock.getDelayedCalls() == []


def test_unauthenticated_limit_counts_only_waiting_connections():
    """Beyond max_unauthenticated connections at the prompts, a new one gets one line and
    is closed; logged-in sessions and closed connections free their place."""
    _, service, factory, _ = console(max_unauthenticated=3)
    waiting = [Client(factory, port=40000 + n) for n in range(3)]
    refused = Client(factory, port=40010)
    assert refused.output() == ("Connection refused: too many connections waiting to "
                                "log in; try again later\n")
    assert refused.closing
    assert "unauthenticated=3/3" in service.status_lines()[0]
    waiting[0].send("admin", "s3cret")
    waiting[1].lose()
    assert "unauthenticated=1/3" in service.status_lines()[0]
    more = [Client(factory, port=40020 + n) for n in range(2)]
    assert not any(c.closing for c in more + waiting)
    assert Client(factory, port=40030).closing


def test_per_address_limit():
    """One address may hold at most 5 of the waiting connections (an IPv6 /64 counts as one
    address); other addresses still get in."""
    _, _, factory, _ = console()
    for n in range(5):
        assert not Client(factory, "192.0.2.1", 40000 + n).closing
    extra = Client(factory, "192.0.2.1", 40010)
    assert extra.output() == ("Connection refused: too many connections from this "
                              "address waiting to log in\n")
    assert not Client(factory, "192.0.2.2").closing
    for n in range(5):
        assert not Client(factory, f"2001:db8::{n + 1}", 40000 + n).closing
    assert Client(factory, "2001:db8::ffff").closing
    assert not Client(factory, "2001:db8:0:1::1").closing


def test_per_address_limit_never_above_the_total():
    """With max_unauthenticated below 5, one address may take all of it."""
    assert LoginLimits(max_unauthenticated=3).per_address == 3
    assert LoginLimits(max_unauthenticated=20).per_address == 5


def test_failures_over_several_connections_ban_the_address():
    """Failed logins count per address across connections; the one that reaches the
    threshold is told the address is banned and closed, and a banned address is refused
    at once, before any prompt, while other addresses still log in."""
    server, _, factory, clock = console(failures=4)
    first = Client(factory)
    for _ in range(3):
        first.send("admin", "wrong")
        clock.advance(1)
    assert first.closing
    second = Client(factory)
    second.output()
    second.send("admin", "wrong")
    clock.advance(1)
    assert second.output() == "Password: \nAuthentication failed: address banned\n"
    assert second.closing
    assert server.bans.is_banned("console", "192.0.2.1")
    again = Client(factory)
    assert again.output() == "Connection refused: address banned\n"
    assert again.closing
    logged_in(factory, "192.0.2.2")


def test_banned_meanwhile_the_password_is_not_checked():
    """A connection already at the Password prompt when its address gets banned is refused
    even with the right password."""
    server, _, factory, _ = console(failures=4)
    client = Client(factory)
    client.send("admin")
    for _ in range(4):
        server.bans.failed("console", "192.0.2.1")
    client.output()
    client.send("s3cret")
    assert client.output() == "\nAuthentication failed: address banned\n"
    assert client.closing


def test_failures_zero_never_bans():
    """[security] ban_failures = 0 turns banning off: only the 3 tries per connection stay."""
    _, _, factory, clock = console(failures=0)
    for _ in range(5):
        client = Client(factory)
        for _ in range(3):
            client.send("admin", "wrong")
            clock.advance(1)
        client.lose()
    logged_in(factory)


def test_server_errors_do_not_count_towards_a_ban():
    """Only a refused password counts towards a ban, not a failure of the server itself."""
    server, _, factory, clock = console(failures=1)
    client = Client(factory)
    client.login._ebLogin(Failure(RuntimeError("realm broke")))
    clock.advance(1)
    assert not server.bans.is_banned("console", "192.0.2.1")
    client.login._ebLogin(Failure(error.UnauthorizedLogin()))
    assert server.bans.is_banned("console", "192.0.2.1")


def test_reload_applies_limits_to_new_connections():
    """After reconfigService, new connections get the new limits; open ones keep theirs."""
    clock = Clock()
    _, service, factory, _ = console(clock, login_timeout=30, max_unauthenticated=5)
    old = Client(factory)
    service.reconfigService(Config(console=ConsoleConfig(
        users={"admin": "s3cret"}, login_timeout=100, max_unauthenticated=2)), None)
    new = Client(factory, port=40001)
    assert Client(factory, port=40002).closing  # 2 waiting already
    clock.advance(30)
    assert old.closing and not new.closing
    clock.advance(70)
    assert new.closing


def test_banned_and_delbanned_commands():
    """banned lists the bans in force; delbanned lifts those on one address or all,
    one line per ban lifted, then the count and OK."""
    server, _, factory, clock = console(failures=1)
    client = logged_in(factory, "192.0.2.9")
    server.bans.failed("console", "198.51.100.7")
    clock.advance(100)
    server.bans.failed("sip", "2001:db8::5")
    client.send("banned")
    assert client.output() == ("console 198.51.100.7 banned for 800 s more\n"
                               "sip 2001:db8::/64 banned for 900 s more\n"
                               "2 ban(s) in force\nOK\nmizu> ")
    client.send("delbanned 198.51.100.7")
    assert client.output() == ("console 198.51.100.7 banned for 800 s more\n"
                               "1 ban(s) lifted\nOK\nmizu> ")
    assert not server.bans.is_banned("console", "198.51.100.7")
    client.send("delbanned 203.0.113.1")
    assert client.output() == "0 ban(s) lifted\nOK\nmizu> "
    client.send("delbanned")
    assert client.output() == ("sip 2001:db8::/64 banned for 900 s more\n"
                               "1 ban(s) lifted\nOK\nmizu> ")
    assert server.bans.active() == []


def test_help_shows_the_ban_commands():
    """help lists banned and delbanned with their usage."""
    _, _, factory, _ = console()
    client = logged_in(factory)
    client.send("help delbanned")
    assert client.output() == ("delbanned [<address>] -- lift every ban, or the bans on one "
                               "address\nOK\nmizu> ")


def test_gate_releases_each_address():
    """The gate forgets an address once its last waiting connection is gone."""
    clock = Clock()
    gate = LoginGate(clock, Bans(clock), LoginLimits(max_unauthenticated=2))
    assert gate.admit("192.0.2.1") is None and gate.admit("192.0.2.1") is None
    assert gate.admit("192.0.2.2") is not None
    gate.release("192.0.2.1")
    gate.release("192.0.2.1")
    assert gate.pending == 0 and not gate._per_address
