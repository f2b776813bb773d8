"""The HTTP connection with mizu's limits: connections per address, a deadline for each
request, header and body sizes. What it refuses is answered before any resource runs.

- A client may hold ``max_connections`` connections at once; more are closed at once.
- A request must arrive whole within ``request_timeout`` seconds of its first byte (or of
  the connection, or of the previous answer): else ``408``, or a plain close for a
  connection that sent nothing. A client trickling bytes cannot hold a slot for long.
- A request line and headers over ``max_header_bytes``, or more than ``max_headers``
  headers, are answered ``431``; a body over ``max_body`` (by its length, or as its
  chunks arrive) ``413``. Nothing of such a request reaches a resource.
"""

from __future__ import annotations

import json

from twisted.logger import Logger
from twisted.web import http, server

from mizu.bans import address_key
from mizu.http.errors import TooMany

log = Logger()

PHRASES = {408: b"Request Timeout", 413: b"Content Too Large",
           431: b"Request Header Fields Too Large"}


class LimitedChannel(http.HTTPChannel):
    """An ``HTTPChannel`` that enforces the site's ``limits.config``."""

    # Twisted's own limits are set above ours so that ours answer first.
    maxHeaders = 10_000
    totalHeadersSize = 16 * 1024 * 1024

    def connectionMade(self):
        super().connectionMade()
        self._head = 0  # bytes of the request line and headers so far
        self._headers = 0
        self._body = 0
        self._refused = False
        self._deadline = None
        self._arm()

    # -- the deadline ---------------------------------------------------------------------
    def _arm(self):
        self._disarm()
        self._partial = False
        self._deadline = self.site.clock.callLater(
            self.site.limits.config.request_timeout, self._expired)

    def _disarm(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self):
        self._deadline = None
        if self._partial:
            log.info("HTTP: {peer} did not send a whole request in time", peer=self._peer())
            self._refuse(408, "the request did not arrive in time")
        else:
            self.loseConnection()  # an idle connection: nothing to answer

    def requestDone(self, request):
        self._arm()  # before Twisted replays pipelined data, which may disarm it
        super().requestDone(request)

    # -- sizes ----------------------------------------------------------------------------
    def dataReceived(self, data):
        if self._refused:
            return
        if self._deadline is not None:
            self._partial = True
        super().dataReceived(data)

    def rawDataReceived(self, data):
        if not self._refused:
            super().rawDataReceived(data)

    def lineReceived(self, line):
        if self._refused:
            return
        self._head += len(line) + 2
        if self._head > self.site.limits.config.max_header_bytes:
            self._refuse(431, "the request line and headers are too large")
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line):
        self._refuse(431, "a header line is too long")

    def headerReceived(self, line):
        self._headers += 1
        if self._headers > self.site.limits.config.max_headers:
            self._refuse(431, "too many headers")
            return False
        return super().headerReceived(line)

    def allHeadersReceived(self):
        limit = self.site.limits.config.max_body
        if self.length is not None and self.length > limit:
            self._refuse(413, f"the body is larger than {limit} bytes")
            return
        super().allHeadersReceived()

    def body_chunk(self, size: int) -> bool:
        """Count ``size`` bytes of body; False (and refused) once it is over the limit."""
        if self._refused:
            return False
        self._body += size
        limit = self.site.limits.config.max_body
        if self._body > limit:
            self._refuse(413, f"the body is larger than {limit} bytes")
            return False
        return True

    def allContentReceived(self):
        self._disarm()
        self._head = self._headers = self._body = 0
        super().allContentReceived()

    # -- refusing -------------------------------------------------------------------------
    def _peer(self) -> str:
        return getattr(self.transport.getPeer(), "host", "?")

    def _refuse(self, status: int, reason: str):
        """Answer ``status`` with ``reason`` and close; the request goes no further."""
        if self._refused:
            return
        self._refused = True
        self._disarm()
        self.site.metrics.refused.labels(str(status)).inc()
        self.setRawMode()
        path = getattr(self, "_path", b"") or b""
        if path.startswith(b"/api/"):
            kind, body = b"application/json", json.dumps({"error": reason}).encode()
        else:
            kind, body = b"text/plain; charset=utf-8", f"ERROR: {reason}\n".encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s"
                             % (status, PHRASES[status], kind, len(body), body))
        self.loseConnection()

    def connectionLost(self, reason):
        self._disarm()
        self.site.connection_lost(self)
        super().connectionLost(reason)


class LimitedRequest(server.Request):
    """A request whose body is counted as it arrives (for bodies sent in chunks)."""

    def handleContentChunk(self, data):
        if self.channel.body_chunk(len(data)):
            super().handleContentChunk(data)


class LimitedSite(server.Site):
    """A ``Site`` whose connections are ``LimitedChannel`` and counted per address, and
    whose requests are checked against ``limits`` (rates, bans) before any resource."""

    protocol = LimitedChannel
    requestFactory = LimitedRequest

    def __init__(self, resource, limits, metrics, clock, refused):
        # POST forms are parsed by the resource that takes them (mvapi.arguments), not for
        # every request by Twisted's costly Content-Type parser.
        super().__init__(resource, reactor=clock, timeout=None, parsePOSTFormSubmission=False)
        self.limits = limits
        self.metrics = metrics
        self.clock = clock
        self._refused = refused  # the resource that answers a TooMany
        self._connections: dict[str, int] = {}

    def buildProtocol(self, addr):
        key = address_key(getattr(addr, "host", "") or "unknown")
        limit = self.limits.config.max_connections
        if limit and self._connections.get(key, 0) >= limit:
            log.info("HTTP: refused a connection from {key}: {n} already open", key=key,
                     n=limit)
            self.metrics.refused.labels("0").inc()
            return None
        channel = super().buildProtocol(addr)
        channel.address_key = key
        self._connections[key] = self._connections.get(key, 0) + 1
        return channel

    def connection_lost(self, channel):
        key = channel.address_key
        left = self._connections.get(key, 1) - 1
        if left > 0:
            self._connections[key] = left
        else:
            self._connections.pop(key, None)

    def log(self, request):
        if self.limits.config.access_log:
            super().log(request)

    def getResourceFor(self, request):
        try:
            self.limits.check_address(request)
        except TooMany as e:
            self.metrics.refused.labels("429").inc()
            return self._refused(e)
        return super().getResourceFor(request)
