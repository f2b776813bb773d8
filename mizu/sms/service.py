"""The SMPP link as a service: bind to ``[smpp] host:port``, rebind after any failure,
unbind on stop, and say how the link is for the console's ``status``."""

from __future__ import annotations

import random
import time

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger

from mizu.sms.esme import EsmeFactory
from mizu.sms.processor import SmsProcessor

log = Logger()

# Waits between binds: 1 s, then growing to 20 s (+ up to 1 s of jitter), so mizu binds
# again within about 21 s of the SMSC coming back.
RETRY = backoffPolicy(initialDelay=1.0, maxDelay=20.0, factor=2.0,
                      jitter=lambda: random.uniform(0, 1))


class SmppLink:
    """What the ESME tells about the link: ``state`` is off, down, binding or bound."""

    def __init__(self, clock):
        self._clock = clock
        self.state = "off"
        self.since = clock.seconds()
        self.error = ""
        self.esme = None
        self.attempts = 0

    def _now(self, state: str) -> None:
        self.state, self.since = state, self._clock.seconds()

    def binding(self):
        self.attempts += 1
        self._now("binding")

    def bound(self, esme):
        self.esme, self.error, self.attempts = esme, "", 0
        self._now("bound")

    def down(self, reason: str):
        self.esme, self.error = None, reason
        self._now("down")


class SmppService(Service):
    """The ESME bound to the operator's SMSC while ``[smpp] enabled``."""

    name = "smpp"

    def __init__(self, root, dispatcher, reactor, retry=RETRY):
        self._root = root
        self._reactor = reactor
        self._retry = retry
        self.config = root.config.smpp
        self.link = SmppLink(reactor)
        self.processor = SmsProcessor(dispatcher, root.bans, reactor, lambda: self.config,
                                      self.reply)
        self._client: ClientService | None = None

    def startService(self):
        Service.startService(self)
        self._connect()

    def _connect(self):
        config = self.config
        if not config.enabled:
            self.link.state = "off"
            return
        endpoint = HostnameEndpoint(self._reactor, config.host, config.port,
                                    timeout=config.response_timeout)
        factory = EsmeFactory(config, self.processor, self.link, self._reactor)
        self._client = ClientService(endpoint, factory, retryPolicy=self._retry,
                                     clock=self._reactor,
                                     prepareConnection=lambda esme: esme.whenBound())
        self._client.startService()
        self.link.state, self.link.error = "binding", ""
        log.info("SMPP: binding as {bind} to {host}:{port}", bind=config.bind,
                 host=config.host, port=config.port)

    @defer.inlineCallbacks
    def _disconnect(self):
        client, self._client = self._client, None
        if client is None:
            return
        esme = self.link.esme
        if esme is not None:
            yield esme.unbind()
        yield client.stopService()
        self.link.state = "off"

    def stopService(self):
        Service.stopService(self)
        return self._disconnect()

    @defer.inlineCallbacks
    def _restart(self):
        yield self._disconnect()
        if self.running:
            self._connect()

    def reconfigService(self, config, settings):
        if config.smpp != self.config:
            self.config = config.smpp
            log.info("SMPP: the settings changed; binding again")
            self._restart().addErrback(
                lambda f: log.failure("SMPP: could not restart the link", f))

    def reply(self, destination: str, text: str):
        """Send ``text`` to ``destination`` over the bound link; None when it cannot be."""
        esme = self.link.esme
        if esme is None or self.config.bind != "transceiver":
            log.info("SMPP: no reply to {to} (not bound as a transceiver): {text}",
                     to=destination, text=text)
            return None
        return esme.submit(destination, text)

    def status_lines(self) -> list[str]:
        link, config = self.link, self.config
        if link.state == "off":
            return ["smpp off"]
        where = f"{config.host}:{config.port}"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(link.since))
        if link.state == "bound":
            return [f"smpp bound {config.bind} {where} since {since}"]
        last = f" (last error: {link.error})" if link.error else ""
        return [f"smpp {link.state} {where} attempt {max(link.attempts, 1)}{last}"]

