"""The Mizu-compatible API: ``GET|POST /mvapireq/?apientry=NAME&authid=USER&authpwd=PASS``.

Entries: ``apitest`` (check the credentials), ``callback`` (``anum`` to call back, optional
``bnum``), ``p2p`` (``anum`` and ``bnum``: a phone-to-phone call), ``balance`` and
``rating`` (``anum``: the number to rate). The body is plain text, ``OK``, ``OK: <data>``
or ``ERROR: <reason>``; ``format=json`` gives ``{"status": "OK", "data": ...}`` or
``{"status": "ERROR", "reason": ...}``. The HTTP status says what went wrong (see
``mizu.http.errors``); a rejected request stores nothing.
"""

from __future__ import annotations

import hmac
import json
import time
from decimal import Decimal
from urllib.parse import parse_qs

from twisted.internet import defer
from twisted.web import resource, server

from mizu.billing.money import amount
from mizu.dispatch.request import CallbackRequest, clean_number
from mizu.errors import AuthenticationFailed, BadRequest, NoRoute
from mizu.http.errors import error_headers, http_error

ENTRIES = ("apitest", "callback", "p2p", "balance", "rating")
MAX_VALUE = 256


FORM = b"application/x-www-form-urlencoded"


def _form(request) -> dict[bytes, list[bytes]]:
    """The query's fields, and a POST form's (which win, as in Twisted's own parsing)."""
    args = dict(request.args)
    if request.method == b"POST":
        kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if kind == FORM:
            args.update(parse_qs(request.content.read(), keep_blank_values=True))
        elif kind:
            raise BadRequest("a POST form must be application/x-www-form-urlencoded")
    return args


def arguments(request) -> dict[str, str]:
    """The query and form fields, one value each; ``BadRequest`` for bytes not UTF-8."""
    fields = {}
    for key, values in _form(request).items():
        try:
            name = key.decode("utf-8")
            value = values[-1].decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the request is not UTF-8") from None
        if len(value) > MAX_VALUE:
            raise BadRequest(f"{name} is longer than {MAX_VALUE} characters")
        fields[name] = value
    return fields


class MvApiResource(resource.Resource):
    """``/mvapireq/``: each request is answered once the dispatcher has done its part."""

    isLeaf = True

    def __init__(self, dispatcher, limits):
        super().__init__()
        self._dispatcher = dispatcher
        self._limits = limits

    def render_GET(self, request):
        request.mizu_started = time.monotonic()
        self._answer(request)
        return server.NOT_DONE_YET

    render_POST = render_GET

    def render(self, request):
        if request.method in (b"GET", b"POST", b"HEAD"):
            return super().render(request)
        request.setResponseCode(405)
        request.setHeader(b"allow", b"GET, POST")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        method = request.method.decode("latin-1")[:20]
        return f"ERROR: method {method!r} not allowed: use GET or POST\n".encode()

    def _answer(self, request):
        fmt = "text"
        try:
            fields = arguments(request)
            fmt = "json" if fields.get("format") == "json" else "text"
            d = self._entry(fields)
        except Exception:
            d = defer.fail()
        d.addCallbacks(lambda data: (200, "OK", data, []), self._failed,
                       errbackArgs=(request,))
        d.addCallback(lambda result: self._write(request, fmt, *result))
        d.addCallback(lambda _: self._dispatcher.metrics.http.labels(
            "mvapireq", str(request.code)).observe(time.monotonic() - request.mizu_started))

    def _failed(self, failure, request):
        if failure.check(AuthenticationFailed):
            self._limits.login_failed(request)
        status, reason = http_error(failure)
        return status, "ERROR", reason, error_headers(failure)

    @staticmethod
    def _write(request, fmt, status, outcome, data, headers):
        if request._disconnected:
            return
        request.setResponseCode(status)
        for name, value in headers:
            request.setHeader(name, value)
        if fmt == "json":
            request.setHeader(b"content-type", b"application/json")
            key = "data" if outcome == "OK" else "reason"
            body = {"status": outcome} if data is None else {"status": outcome, key: data}
            request.write(json.dumps(body).encode())
        else:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            text = outcome if data is None else f"{outcome}: {data}"
            request.write(text.encode() + b"\n")
        request.finish()

    @defer.inlineCallbacks
    def _entry(self, fields):
        entry = fields.get("apientry", "")
        if entry not in ENTRIES:
            raise BadRequest(f"unknown apientry {entry!r} (one of {', '.join(ENTRIES)})")
        key = self._limits.config.authkey
        if key and not hmac.compare_digest(fields.get("authkey", "").encode(), key.encode()):
            raise AuthenticationFailed("wrong authkey")
        user = yield self._dispatcher.authenticate(fields.get("authid", ""),
                                                   fields.get("authpwd", ""))
        if entry in ("callback", "p2p"):
            if entry == "p2p" and not fields.get("bnum"):
                raise BadRequest("B-number is missing")
            self._limits.check_user(user.id)
            cbid = yield self._dispatcher.submit(CallbackRequest(
                anum=fields.get("anum", ""), bnum=fields.get("bnum", ""), source="http",
                userid=user.id), user=user)
            return str(cbid)
        if entry == "apitest":
            return None
        if entry == "balance":
            credit = yield self._dispatcher.core.store.ledger.balance(user.id)
            return amount(credit or Decimal(0))
        number = clean_number(fields.get("anum", ""), "number")
        tariff = self._dispatcher.tables.rates.rate(number)
        if tariff is None:
            raise NoRoute(f"no rate for {number}")
        return amount(tariff.price)
