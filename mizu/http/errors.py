"""How mizu's errors look over HTTP: one table, used by every HTTP resource."""

from __future__ import annotations

import math

from twisted.logger import Logger
from twisted.python.failure import Failure

from mizu.errors import (
    AuthenticationFailed,
    BadRequest,
    Blocked,
    InsufficientCredit,
    LimitReached,
    MizuError,
    NoRoute,
    NotFound,
    StoreError,
)

log = Logger()


class TooLarge(BadRequest):
    """A request body over the limit."""

    code = "too-large"


class Conflict(MizuError):
    """The same Idempotency-Key is being used by a request still being stored."""

    code = "conflict"


class KeyReused(MizuError):
    """An Idempotency-Key sent again with another request."""

    code = "key-reused"


class TooMany(MizuError):
    """Too many requests; ``retry_after`` is how many whole seconds to wait."""

    code = "too-many"

    def __init__(self, reason: str, retry_after: float):
        super().__init__(reason)
        self.retry_after = max(1, math.ceil(retry_after))


# Most specific first: the status a client can act on, per error.
STATUS: list[tuple[type[Exception], int]] = [
    (TooMany, 429),
    (LimitReached, 429),
    (Blocked, 403),
    (TooLarge, 413),
    (Conflict, 409),
    (KeyReused, 422),
    (BadRequest, 400),
    (AuthenticationFailed, 401),
    (InsufficientCredit, 402),
    (NotFound, 404),
    (NoRoute, 404),
    (StoreError, 503),
    (MizuError, 400),
]


def http_error(failure: Failure) -> tuple[int, str]:
    """(HTTP status, reason) for a failed request; unexpected errors are logged as 500."""
    for kind, status in STATUS:
        if failure.check(kind):
            return status, str(failure.value)
    log.failure("HTTP request failed", failure)
    return 500, "internal error"


def error_headers(failure: Failure) -> list[tuple[bytes, bytes]]:
    """The headers that go with an error: ``Retry-After`` for 429."""
    if failure.check(TooMany, LimitReached) and failure.value.retry_after:
        return [(b"retry-after", str(failure.value.retry_after).encode())]
    return []
