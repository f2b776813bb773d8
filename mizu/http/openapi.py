"""The OpenAPI 3.1 document of the JSON API, made from ``jsonapi.ROUTES``."""

from __future__ import annotations

from mizu import __version__
from mizu.dispatch.request import MAX_DIGITS
from mizu.http.jsonapi import ROUTES, Route

# Statuses every route can answer besides its own ``Route.errors``: the connection's limits
# (``channel.py``: a request too slow, headers too large) and the request rates and bans
# sit in front of all routes, so they are listed here once rather than per route.
COMMON_ERRORS: tuple[int, ...] = (408, 429, 431)

_REASONS = {200: "OK", 202: "Stored; the callback is pending", 400: "Bad request",
            401: "Wrong or missing credentials", 402: "Not enough credit",
            403: "A number on the fraud blocklist (premium-rate or fraud-risk range)",
            404: "Not found", 408: "The request did not arrive in time",
            409: "The same Idempotency-Key is still being stored",
            413: "Body too large", 422: "Idempotency-Key used with another request",
            429: "Too many requests, banned after failed logins, or a fraud limit "
                 "reached (callbacks per hour, spend per day): retry after Retry-After "
                 "seconds",
            431: "Request line and headers too large, or too many headers",
            503: "Database unavailable"}

# What clean_number accepts once spaces and dashes are dropped: digits, maybe after + or 00.
_NUMBER = rf"(\+|00)?[0-9]{{1,{MAX_DIGITS}}}"
_CALLBACK_STATUSES = ["pending", "calling_a", "ivr", "calling_b", "bridged", "completed",
                      "failed"]
_SOURCES = ["ani", "http", "web", "sms", "console", "db"]
_MONEY = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2,}$",
          "description": "a decimal with two places at least, as a string: 5.00, 0.0125"}


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required}


_SCHEMAS = {
    "Error": _object({"error": {"type": "string", "description": "why, for a person"}}),
    "CallbackRequest": _object({
        "anum": {"type": "string", "pattern": f"^{_NUMBER}$", "maxLength": MAX_DIGITS + 2,
                 "description": "the number to call back (spaces and dashes are dropped)"},
        "bnum": {"type": "string", "pattern": f"^({_NUMBER})?$",
                 "maxLength": MAX_DIGITS + 2,
                 "description": "the destination; the IVR asks for it when empty"},
    }, ["anum"]) | {"examples": [{"anum": "+4917011", "bnum": "4420111"}]},
    "CallbackAccepted": _object({
        "id": {"type": "integer", "minimum": 1},
        "status": {"type": "string", "enum": _CALLBACK_STATUSES,
                   "description": "pending, or the current status of an idempotent replay"},
    }),
    "Callback": _object({
        "id": {"type": "integer", "minimum": 1},
        "anum": {"type": "string"},
        "bnum": {"type": "string", "description": "empty while the IVR has not asked"},
        "source": {"type": "string", "enum": _SOURCES},
        "status": {"type": "string", "enum": _CALLBACK_STATUSES},
        "reason": {"type": "string", "description": "why it failed or was retried; or empty"},
        "created": {"type": "number", "description": "POSIX seconds"},
        "updated": {"type": "number", "description": "POSIX seconds"},
    }),
    "Balance": _object({"balance": _MONEY}),
    "Rate": _object({
        "number": {"type": "string", "description": "the number rated, as cleaned"},
        "prefix": {"type": "string", "description": "the longest prefix with a rate"},
        "price": {**_MONEY, "description": "per minute"},
        "initblock": {"type": "integer", "minimum": 0, "description": "seconds"},
        "increment": {"type": "integer", "minimum": 0, "description": "seconds"},
        "connectfee": _MONEY,
    }),
}

# By Route.handler: the schema of its success body, and of its request body if it takes one.
_BODIES = {"create_callback": "CallbackAccepted", "get_callback": "Callback",
           "get_balance": "Balance", "get_rate": "Rate"}
_REQUEST_BODIES = {"create_callback": "CallbackRequest"}

_PATH_PARAMETERS = {
    "id": ({"type": "integer", "minimum": 1, "maximum": 2 ** 63 - 1}, 17),
    "number": ({"type": "string", "pattern": f"^{_NUMBER}$"}, "4420111"),
}

# The callback a 202 names can be followed with GET /callbacks/{id}.
_LINKS = {"create_callback": {"GetCallback": {
    "operationId": "get_callback", "parameters": {"id": "$response.body#/id"},
    "description": "the callback just requested"}}}

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"},
    "description": "sent again with the same body, it answers the first request's "
                   "callback instead of storing a second one"}

_HEADERS = {
    401: {"WWW-Authenticate": {
        "description": "the Basic challenge (not sent when X-Requested-With is)",
        "schema": {"type": "string"}}},
    429: {"Retry-After": {"required": True, "description": "seconds to wait",
                          "schema": {"type": "integer", "minimum": 1}}},
}


def _json(schema: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def statuses(route: Route) -> list[int]:
    """Every status the document lists for ``route``: its success, its errors, the common."""
    return sorted({route.status, *route.errors, *COMMON_ERRORS})


def _operation(route: Route) -> dict:
    params = []
    for part in route.path.split("/"):
        if part.startswith("{"):
            schema, example = _PATH_PARAMETERS[part[1:-1]]
            params.append({"name": part[1:-1], "in": "path", "required": True,
                           "schema": schema, "example": example})
    responses = {}
    for status in statuses(route):
        response = {"description": _REASONS[status],
                    "content": _json(_BODIES[route.handler] if status == route.status
                                     else "Error")}
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        if status == route.status and route.handler in _LINKS:
            response["links"] = _LINKS[route.handler]
        responses[str(status)] = response
    operation = {"summary": route.summary, "operationId": route.handler,
                 "responses": responses}
    if route.handler in _REQUEST_BODIES:
        operation["requestBody"] = {"required": True,
                                    "content": _json(_REQUEST_BODIES[route.handler])}
    if route.handler == "create_callback":
        params.append(_IDEMPOTENCY_KEY)
    if params:
        operation["parameters"] = params
    return operation


def document() -> dict:
    """The whole document: every route of ``ROUTES``, HTTP Basic security."""
    paths: dict = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "mizu callback API", "version": __version__},
        "servers": [{"url": "/api/v1"}],
        "security": [{"basic": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": _SCHEMAS,
        },
    }
