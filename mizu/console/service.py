"""The console service: a telnet listener whose accounts follow ``reload``."""

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
from mizu.console.protocol import ConsoleProtocol, LoginProtocol

log = Logger()


@implementer(portal.IRealm)
class ConsoleRealm:
    """Gives each logged-in user a console session on the server."""

    def __init__(self, server):
        self._server = server

    def requestAvatar(self, avatarId, mind, *interfaces):
        if telnet.ITelnetProtocol not in interfaces:
            raise NotImplementedError("the console only speaks telnet")
        return telnet.ITelnetProtocol, ConsoleProtocol(self._server, avatarId), lambda: None


class ConsoleService(Service):
    """Listens on ``[console] listen``; ``port`` is the bound port once started."""

    name = "console"

    def __init__(self, server, config: Config, reactor):
        self._server = server
        self._reactor = reactor
        self._listen = config.console.listen
        self._users = self._accounts(config)
        self._listening = None
        self.port: int | None = None

    @staticmethod
    def _accounts(config: Config) -> dict[str, str]:
        return dict(config.console.users) or ensure_admin(config.database.datadir)

    @defer.inlineCallbacks
    def startService(self):
        Service.startService(self)
        checker = ConsoleChecker(lambda: self._users, self._reactor)
        login = portal.Portal(ConsoleRealm(self._server), [checker])
        factory = ServerFactory.forProtocol(lambda: telnet.TelnetTransport(LoginProtocol, login))
        endpoint = serverFromString(self._reactor, self._listen)
        self._listening = yield endpoint.listen(factory)
        self.port = self._listening.getHost().port
        log.info("console listening on {endpoint} (port {port})",
                 endpoint=self._listen, port=self.port)

    def stopService(self):
        Service.stopService(self)
        if self._listening is not None:
            return self._listening.stopListening()

    def status_lines(self) -> list[str]:
        """One line on the console listener."""
        return [f"console port={self.port} users={len(self._users)}"]

    def reconfigService(self, config: Config, settings) -> None:
        """New accounts apply to the next login; the listen address needs a restart."""
        self._users = self._accounts(config)
