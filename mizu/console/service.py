"""The console service: a telnet listener whose accounts and limits follow ``reload``."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.conch import telnet
from twisted.cred import portal
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from zope.interface import implementer

from mizu.config import Config
from mizu.console.auth import ConsoleChecker, ensure_admin
from mizu.console.login import LoginGate, LoginLimits, LoginProtocol
from mizu.console.protocol import ConsoleProtocol
from mizu.console.transport import ConsoleTelnetTransport

log = Logger()


@implementer(portal.IRealm)
class ConsoleRealm:
    """Gives each logged-in user a console session on the server.

    The mind is the connection's ``LoginLimits``: its session gets their idle timeout.
    """

    def __init__(self, server, clock):
        self._server = server
        self._clock = clock

    def requestAvatar(self, avatarId, mind, *interfaces):
        """A ``ConsoleProtocol`` for ``avatarId``, with no logout action."""
        if telnet.ITelnetProtocol not in interfaces:
            raise NotImplementedError("the console only speaks telnet")
        limits = mind if isinstance(mind, LoginLimits) else LoginLimits()
        session = ConsoleProtocol(self._server, avatarId, self._clock, limits.idle_timeout)
        return telnet.ITelnetProtocol, session, lambda: None


class ConsoleService(Service):
    """Listens on ``[console] listen``; ``port`` is the bound port once started.

    Failed logins count towards bans in ``server.bans``; ``[console]`` login_timeout,
    idle_timeout and max_unauthenticated apply to each connection from its start.
    """

    name = "console"

    def __init__(self, server, config: Config, reactor):
        self._server = server
        self._reactor = reactor
        self._listen = config.console.listen
        self._users = self._accounts(config)
        self.gate = LoginGate(reactor, server.bans, LoginLimits.from_config(config.console))
        self._listening = None
        self.port: int | None = None

    @staticmethod
    def _accounts(config: Config) -> dict[str, str]:
        return dict(config.console.users) or ensure_admin(config.database.datadir)

    def makeFactory(self) -> ServerFactory:
        """The factory of console connections: telnet, then the login, then a session."""
        checker = ConsoleChecker(lambda: self._users, self._reactor)
        login = portal.Portal(ConsoleRealm(self._server, self._reactor), [checker])
        return ServerFactory.forProtocol(
            lambda: ConsoleTelnetTransport(LoginProtocol, login, self.gate))

    @defer.inlineCallbacks
    def startService(self):
        Service.startService(self)
        endpoint = serverFromString(self._reactor, self._listen)
        self._listening = yield endpoint.listen(self.makeFactory())
        self.port = self._listening.getHost().port
        log.info("console listening on {endpoint} (port {port})",
                 endpoint=self._listen, port=self.port)

    def stopService(self):
        Service.stopService(self)
        if self._listening is not None:
            return self._listening.stopListening()

    def status_lines(self) -> list[str]:
        """One line on the console listener."""
        limits = self.gate.limits
        return [f"console port={self.port} users={len(self._users)} "
                f"unauthenticated={self.gate.pending}/{limits.max_unauthenticated}"]

    def reconfigService(self, config: Config, settings) -> None:
        """New accounts apply to the next login, new limits to the next connection.

        The listen address needs a restart.
        """
        self._users = self._accounts(config)
        self.gate.limits = LoginLimits.from_config(config.console)
