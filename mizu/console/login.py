"""Console login: prompts, bans by address, a pause after each failure, and limits.

A connection from a banned address, or beyond the limits on connections that have not
logged in yet, gets one line saying why and is closed before any prompt. Otherwise it
has ``login_timeout`` seconds and three tries to log in; each failed try counts towards
a ban of its address (``[security]``) and is answered only after ``failure_delay``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from twisted.conch import telnet
from twisted.cred import credentials, error
from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from mizu.bans import address_key
from mizu.config import ConsoleConfig
from mizu.console.protocol import MAX_LINE

log = Logger()

BAN_KIND = "console"
MAX_LOGIN_FAILURES = 3
MAX_UNAUTHENTICATED_PER_ADDRESS = 5
FAILURE_DELAY = 1.0
REFUSAL_LOG_INTERVAL = 60.0


def peer_host(address) -> str:
    """The host part of a peer address; ``unix`` for a Unix socket peer, which has none."""
    return getattr(address, "host", None) or "unix"


@dataclass(frozen=True)
class LoginLimits:
    """The limits a connection gets when it is opened (a reload changes later ones only).

    ``idle_timeout`` = 0 means a logged-in session never times out. At most
    ``max_unauthenticated`` connections may wait at the login prompts at once, and at
    most ``per_address`` of them from one address (an IPv6 /64 counting as one).
    """

    login_timeout: float = 60
    idle_timeout: float = 900
    max_unauthenticated: int = 20
    failure_delay: float = FAILURE_DELAY

    @classmethod
    def from_config(cls, console: ConsoleConfig) -> LoginLimits:
        """The limits set in ``[console]``."""
        return cls(console.login_timeout, console.idle_timeout, console.max_unauthenticated)

    @property
    def per_address(self) -> int:
        """How many connections one address may hold at the login prompts."""
        return min(MAX_UNAUTHENTICATED_PER_ADDRESS, self.max_unauthenticated)


class LoginGate:
    """Admits console connections: refuses banned addresses and counts those not logged in.

    One gate is shared by every connection of a listener; ``limits`` is replaced on reload.
    """

    def __init__(self, clock, bans, limits: LoginLimits):
        self.clock = clock
        self.bans = bans
        self.limits = limits
        self.pending = 0
        self._per_address: Counter[str] = Counter()
        self._refused = 0
        self._refusal_logged_at: float | None = None

    def admit(self, host: str) -> str | None:
        """Count a new connection from ``host`` as waiting; or the reason it is refused."""
        key = address_key(host)
        if self.bans.is_banned(BAN_KIND, host):
            reason = "address banned"
        elif self.pending >= self.limits.max_unauthenticated:
            reason = "too many connections waiting to log in; try again later"
        elif self._per_address[key] >= self.limits.per_address:
            reason = "too many connections from this address waiting to log in"
        else:
            self.pending += 1
            self._per_address[key] += 1
            return None
        self._note_refusal(host, reason)
        return reason

    def release(self, host: str) -> None:
        """A connection admitted from ``host`` logged in or went away."""
        key = address_key(host)
        self.pending -= 1
        self._per_address[key] -= 1
        if self._per_address[key] <= 0:
            del self._per_address[key]

    def _note_refusal(self, host: str, reason: str) -> None:
        # A flood of refused connections must not flood the log as well.
        self._refused += 1
        now = self.clock.seconds()
        last = self._refusal_logged_at
        if last is None or now - last >= REFUSAL_LOG_INTERVAL:
            log.warn("console refused {n} connection(s), the latest from {host}: {reason}",
                     n=self._refused, host=host, reason=reason)
            self._refused, self._refusal_logged_at = 0, now


class LoginProtocol(TimeoutMixin, telnet.AuthenticatingTelnetProtocol):
    """Username/Password prompts behind a ``LoginGate``; three failed tries close it.

    A line longer than ``MAX_LINE`` is refused with a line saying so, and closes it.
    """

    MAX_LENGTH = MAX_LINE
    failures = 0
    host = "unix"
    _admitted = False
    _done = False
    _pause = None

    def __init__(self, portal, gate: LoginGate):
        super().__init__(portal)
        self.gate = gate
        self.limits = gate.limits
        self.callLater = gate.clock.callLater

    def connectionMade(self):
        self.host = peer_host(self.transport.getPeer())
        refusal = self.gate.admit(self.host)
        if refusal is not None:
            self._close(f"Connection refused: {refusal}")
            return
        self._admitted = True
        self.setTimeout(self.limits.login_timeout)
        super().connectionMade()

    def connectionLost(self, reason=None):
        self._stop()
        self._release()
        super().connectionLost(reason)

    def _stop(self):
        self._done = True
        self.state = "Discard"
        self.setTimeout(None)
        if self._pause is not None and self._pause.active():
            self._pause.cancel()
        self._pause = None

    def _release(self):
        if self._admitted:
            self._admitted = False
            self.gate.release(self.host)

    def _close(self, line: str):
        """Say why, then close; lines still arriving are ignored."""
        self._stop()
        self.transport.write(f"{line}\n".encode())
        self.transport.loseConnection()

    def dataReceived(self, data):
        # The telnet layer turns CR LF into LF and CR NUL (Return on some clients) into CR.
        super().dataReceived(data.replace(b"\r", b"\n"))

    def lineLengthExceeded(self, line):
        if not self._done:
            log.info("console login from {host}: line too long", host=self.host)
            self._stop()
            self.transport.write(f"\nERROR: line longer than {MAX_LINE} characters: "
                                 "connection closed\n".encode())
            close = getattr(self.transport, "closeAfterWrite", None)
            if close is not None:
                close(self.callLater)
            else:
                self.transport.loseConnection()

    def timeoutConnection(self):
        log.info("console login from {host} timed out", host=self.host)
        self._close(f"\nLogin timed out after {self.limits.login_timeout:g} s")

    def telnet_User(self, line):
        self.username = line
        # Hide the password where the client agrees; a client that refuses must not stall.
        self.transport.will(telnet.ECHO).addErrback(lambda _: None)
        self.transport.write(b"Password: ")
        return "Password"

    def telnet_Password(self, line):
        username, password = self.username, line
        del self.username
        if self.gate.bans.is_banned(BAN_KIND, self.host):
            # Banned meanwhile (by another connection): the password is not even looked at.
            self._close("\nAuthentication failed: address banned")
            return "Discard"

        def login(_):
            creds = credentials.UsernamePassword(username, password)
            d = self.portal.login(creds, self.limits, telnet.ITelnetProtocol)
            d.addCallbacks(self._cbLogin, self._ebLogin)

        defer.maybeDeferred(self.transport.wont, telnet.ECHO).addBoth(login)
        return "Discard"

    def _cbLogin(self, ial):
        if self._done:
            ial[2]()  # logout: the connection ended while its password was checked
            return
        self.setTimeout(None)
        self._release()
        super()._cbLogin(ial)

    def _ebLogin(self, failure):
        self.failures += 1
        banned = False
        if failure.check(error.UnauthorizedLogin):
            banned = self.gate.bans.failed(BAN_KIND, self.host)
        else:
            log.failure("console login error", failure)
        log.warn("console login failed from {host} ({n} of {max}){banned}", host=self.host,
                 n=self.failures, max=MAX_LOGIN_FAILURES, banned=", banned" if banned else "")
        if not self._done:
            # The answer waits so that one connection cannot try passwords quickly.
            self._pause = self.callLater(self.limits.failure_delay, self._answer, banned)

    def _answer(self, banned: bool):
        self._pause = None
        if banned:
            self._close("\nAuthentication failed: address banned")
        elif self.failures >= MAX_LOGIN_FAILURES:
            self._close("\nAuthentication failed: too many failures")
        else:
            super()._ebLogin(None)
