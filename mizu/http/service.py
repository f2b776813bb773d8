"""The HTTP service: one Twisted Web site on ``[http] listen`` (any endpoint, ``ssl:`` too)."""

from __future__ import annotations

import json
import os

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.web import resource, server, static

from mizu.http.channel import LimitedSite
from mizu.http.jsonapi import JsonApiResource
from mizu.http.limits import HttpLimits
from mizu.http.mvapi import MvApiResource
from mizu.http.openapi import document

log = Logger()


class MetricsResource(resource.Resource):
    """``/metrics``: the Prometheus text exposition."""

    isLeaf = True

    def __init__(self, metrics):
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self._metrics.render()


WEB = os.path.join(os.path.dirname(__file__), "web")


class TooManyResource(resource.Resource):
    """The answer to a client over its request rate, or banned: ``429`` + ``Retry-After``."""

    isLeaf = True

    def __init__(self, error):
        super().__init__()
        self._error = error

    def render(self, request):
        request.setResponseCode(429)
        request.setHeader(b"retry-after", str(self._error.retry_after).encode())
        reason = str(self._error)
        if request.path.startswith(b"/api/"):
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"error": reason}).encode()
        if request.args.get(b"format") == [b"json"]:
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"status": "ERROR", "reason": reason}).encode()
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return f"ERROR: {reason}\n".encode()


def site(dispatcher, limits: HttpLimits, clock) -> server.Site:
    """The resource tree: the web page at ``/``, ``/mvapireq/``, ``/api/v1/``, ``/metrics``."""
    root = static.File(WEB, defaultType="text/plain")
    root.directoryListing = lambda: resource.NoResource("no such page")
    root.putChild(b"metrics", MetricsResource(dispatcher.metrics))
    root.putChild(b"mvapireq", MvApiResource(dispatcher, limits))
    api = resource.Resource()
    api.putChild(b"v1", JsonApiResource(dispatcher, document(), limits))
    root.putChild(b"api", api)
    made = LimitedSite(root, limits, dispatcher.metrics, clock, TooManyResource)
    made.displayTracebacks = False  # errors are answered, never shown
    return made


class HttpService(Service):
    """Listens on ``[http] listen``; ``port`` is the bound port once started."""

    name = "http"

    def __init__(self, dispatcher, config, bans, reactor):
        self._dispatcher = dispatcher
        self._listen = config.listen
        self._reactor = reactor
        self.limits = HttpLimits(config, bans, reactor)
        self._listening = None
        self.port: int | None = None

    @defer.inlineCallbacks
    def startService(self):
        Service.startService(self)
        endpoint = serverFromString(self._reactor, self._listen)
        made = site(self._dispatcher, self.limits, self._reactor)
        self._listening = yield endpoint.listen(made)
        self.port = self._listening.getHost().port
        log.info("HTTP API listening on {endpoint} (port {port})", endpoint=self._listen,
                 port=self.port)

    def stopService(self):
        Service.stopService(self)
        if self._listening is not None:
            return self._listening.stopListening()

    def reconfigService(self, config, settings):
        self.limits.configure(config.http)  # a new listen needs a restart

    def status_lines(self) -> list[str]:
        return [f"http port={self.port}"]
