"""The OpenAPI 3.1 document of the JSON API, made from ``jsonapi.ROUTES``."""

from __future__ import annotations

from mizu import __version__
from mizu.http.jsonapi import ROUTES

_REASONS = {200: "OK", 202: "Stored; the callback is pending", 400: "Bad request",
            401: "Wrong or missing credentials", 402: "Not enough credit",
            404: "Not found", 409: "The same Idempotency-Key is still being stored",
            413: "Body too large", 422: "Idempotency-Key used with another request",
            503: "Database unavailable"}

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}},
          "required": ["error"]}
_CALLBACK_IN = {"type": "object", "properties": {
    "anum": {"type": "string", "description": "the number to call back"},
    "bnum": {"type": "string", "description": "the destination; the IVR asks when empty"}},
    "required": ["anum"]}


def _operation(route) -> dict:
    params = [{"name": part[1:-1], "in": "path", "required": True,
               "schema": {"type": "string"}}
              for part in route.path.split("/") if part.startswith("{")]
    responses = {str(route.status): {"description": _REASONS[route.status],
                                     "content": {"application/json": {"schema": {
                                         "type": "object"}}}}}
    for status in route.errors:
        responses[str(status)] = {"description": _REASONS[status], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation = {"summary": route.summary, "operationId": route.handler,
                 "responses": responses}
    if params:
        operation["parameters"] = params
    if route.method == "POST":
        operation["parameters"] = [{
            "name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "maxLength": 200},
            "description": "sent again with the same body, it answers the first request's "
                           "callback instead of storing a second one"}]
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/CallbackRequest"}}}}
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
            "schemas": {"Error": _ERROR, "CallbackRequest": _CALLBACK_IN},
        },
    }
