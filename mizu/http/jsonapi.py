"""The JSON API under ``/api/v1/`` (HTTP Basic, an end user), described by ``ROUTES``.

``ROUTES`` is the one definition of every route: the dispatcher below serves it and
``openapi.document()`` describes it, so the OpenAPI document cannot drift from the code.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace

from twisted.internet import defer
from twisted.web import resource, server

from mizu.billing.money import amount
from mizu.dispatch.request import CallbackRequest, clean_number
from mizu.errors import AuthenticationFailed, BadRequest, NoRoute, NotFound
from mizu.http.errors import Conflict, KeyReused, TooLarge, error_headers, http_error


@dataclass(frozen=True)
class Route:
    """One route: its method, path (``{name}`` for a path parameter), handler and answers."""

    method: str
    path: str
    handler: str
    summary: str
    status: int
    errors: tuple[int, ...]


ROUTES = (
    Route("POST", "/callbacks", "create_callback",
          "Request a callback to anum (and a connection to bnum, when given)", 202,
          (400, 401, 402, 403, 409, 413, 422, 503)),
    Route("GET", "/callbacks/{id}", "get_callback", "One of your callback requests", 200,
          (401, 404, 503)),
    Route("GET", "/balance", "get_balance", "Your credit", 200, (401, 503)),
    Route("GET", "/rates/{number}", "get_rate", "The tariff for a number", 200,
          (400, 401, 404, 503)),
)


def _match(route: Route, method: str, parts: list[str]) -> dict | None:
    pattern = route.path.strip("/").split("/")
    if route.method != method or len(pattern) != len(parts):
        return None
    params = {}
    for want, got in zip(pattern, parts, strict=True):
        if want.startswith("{"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def idempotency_key(request) -> str | None:
    """The request's ``Idempotency-Key`` (printable ASCII, at most 200 characters), if any."""
    raw = request.getHeader(b"idempotency-key")
    if raw is None:
        return None
    key = raw.decode("latin-1")
    if not key or len(key) > 200 or not all(32 < ord(c) < 127 for c in key):
        raise BadRequest("Idempotency-Key must be 1 to 200 printable ASCII characters")
    return key


def callback_view(row) -> dict:
    """A callback row as the API shows it."""
    return {"id": row.id, "anum": row.anum, "bnum": row.bnum, "source": row.source,
            "status": row.status, "reason": row.reason, "created": row.created,
            "updated": row.updated}


class JsonApiResource(resource.Resource):
    """``/api/v1/``: every route of ``ROUTES``, plus ``openapi.json``."""

    isLeaf = True

    def __init__(self, dispatcher, document: dict, limits):
        super().__init__()
        self._dispatcher = dispatcher
        self._limits = limits
        self._document = json.dumps(document, indent=1).encode()

    def render(self, request):
        parts = [p.decode("utf-8", "replace") for p in request.postpath if p]
        if parts == ["openapi.json"] and request.method == b"GET":
            request.setHeader(b"content-type", b"application/json")
            return self._document
        started = time.monotonic()
        d = self._serve(request, parts).addCallback(self._write, request)
        d.addCallback(lambda _: self._dispatcher.metrics.http.labels(
            "v1", str(request.code)).observe(time.monotonic() - started))
        return server.NOT_DONE_YET

    def _serve(self, request, parts):
        method = request.method.decode("ascii", "replace")
        for route in ROUTES:
            params = _match(route, method, parts)
            if params is not None:
                d = defer.maybeDeferred(getattr(self, route.handler), request, **params)
                return d.addCallbacks(lambda body, s=route.status: (s, body, []),
                                      self._failed, errbackArgs=(request,))
        return defer.succeed((404, {"error": f"no route {method} /{'/'.join(parts)}"}, []))

    def _failed(self, failure, request):
        if failure.check(AuthenticationFailed):
            self._limits.login_failed(request)
        status, reason = http_error(failure)
        return status, {"error": reason}, error_headers(failure)

    @staticmethod
    def _write(result, request):
        status, body, headers = result
        if request._disconnected:
            return
        request.setResponseCode(status)
        for name, value in headers:
            request.setHeader(name, value)
        if status == 401 and not request.getHeader(b"x-requested-with"):
            # a page's script asks with X-Requested-With: no browser login box for it
            request.setHeader(b"www-authenticate", b'Basic realm="mizu"')
        request.setHeader(b"content-type", b"application/json")
        request.write(json.dumps(body).encode())
        request.finish()

    def _user(self, request):
        try:
            name = request.getUser().decode("utf-8")
            password = request.getPassword().decode("utf-8")
        except UnicodeDecodeError:
            raise AuthenticationFailed("credentials are not UTF-8") from None
        if not name:
            return defer.fail(AuthenticationFailed("HTTP Basic credentials are required"))
        return self._dispatcher.authenticate(name, password)

    def _body(self, request) -> dict:
        limit = self._limits.config.max_body  # the channel refuses longer bodies first
        data = request.content.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"the body is larger than {limit} bytes")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BadRequest("the body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        for key in ("anum", "bnum"):
            if key in body and not isinstance(body[key], str):
                raise BadRequest(f"{key} must be a string")
        return body

    @defer.inlineCallbacks
    def create_callback(self, request):
        body = self._body(request)
        user = yield self._user(request)
        key = idempotency_key(request)
        submit = CallbackRequest(anum=body.get("anum", ""), bnum=body.get("bnum", ""),
                                 source="http", userid=user.id)
        if key is None:
            self._limits.check_user(user.id)
            cbid = yield self._dispatcher.submit(submit, user=user)
            return {"id": cbid, "status": "pending"}
        keys = self._dispatcher.core.store.idempotency
        digest = hashlib.sha256(json.dumps([submit.anum, submit.bnum]).encode()).hexdigest()
        ours, first = yield keys.claim(user.id, key, digest)
        if not ours:
            stored, cbid = first
            if stored != digest:
                raise KeyReused("this Idempotency-Key was used with another request")
            if cbid is None:
                raise Conflict("a request with this Idempotency-Key is still being stored")
            row = yield self._dispatcher.core.store.callbacks.get(cbid)
            return {"id": cbid, "status": row.status if row else "pending"}
        try:
            self._limits.check_user(user.id)
            # The key gets the callback's id in the statement that stores it.
            cbid = yield self._dispatcher.submit(
                replace(submit, idempotency_key=key), user=user)
        except Exception:
            yield keys.release(user.id, key)  # only a key that got no callback
            raise
        return {"id": cbid, "status": "pending"}

    @defer.inlineCallbacks
    def get_callback(self, request, id):
        user = yield self._user(request)
        row = (yield self._dispatcher.core.store.callbacks.get(int(id))) if id.isdigit() \
            else None
        if row is None or row.userid != user.id:
            raise NotFound(f"no callback {id}")
        return callback_view(row)

    @defer.inlineCallbacks
    def get_balance(self, request):
        user = yield self._user(request)
        credit = yield self._dispatcher.core.store.ledger.balance(user.id)
        return {"balance": amount(credit)}

    @defer.inlineCallbacks
    def get_rate(self, request, number):
        yield self._user(request)
        number = clean_number(number, "number")
        tariff = self._dispatcher.tables.rates.rate(number)
        if tariff is None:
            raise NoRoute(f"no rate for {number}")
        return {"number": number, "prefix": tariff.prefix, "price": amount(tariff.price),
                "initblock": tariff.initblock, "increment": tariff.increment,
                "connectfee": amount(tariff.connectfee)}
