"""A txpostgres connection pool that outlives PostgreSQL restarts and maps driver errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import psycopg2
from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import reconnection, retrying, txpostgres

from mizu.errors import MizuError, StoreError, StoreUnavailable

log = Logger()

_URI_PASSWORD = re.compile(r"^(\w+://[^:/@]*:)([^@]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, fit for logs and error messages."""
    return _KV_PASSWORD.sub(r"\1***", _URI_PASSWORD.sub(r"\1***\3", dsn))


# Errors that mean the connection itself is gone (the pool reconnects), not a bad statement.
_CONNECTION_LOST = (reconnection.ConnectionDead, txpostgres.RollbackFailed,
                    psycopg2.OperationalError, psycopg2.InterfaceError,
                    error.ConnectionDone, error.ConnectionLost)


def wrap_error(failure: Failure) -> Failure:
    """Turn a driver failure into a ``StoreError``; mizu's own errors pass unchanged."""
    if failure.check(MizuError):
        return failure
    if failure.check(*_CONNECTION_LOST):
        return Failure(StoreUnavailable(f"database connection lost: {_first_line(failure)}"))
    if failure.check(psycopg2.Error):
        exc = failure.value
        wrapped = StoreError(f"database error {exc.pgcode or ''}: {_first_line(failure)}".strip())
        wrapped.pgcode = exc.pgcode
        return Failure(wrapped)
    return failure


def _first_line(failure: Failure) -> str:
    return first_line(failure.value)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (driver messages run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Pool:
    """``size`` autocommit connections plus one for LISTEN, each reconnecting on its own.

    A dead connection is detected (by a failed query or by the server closing its socket)
    and reconnected in the background with backoff; meanwhile queries go to live
    connections, or fail at once with ``StoreUnavailable`` when none is left.
    """

    def __init__(self, dsn: str, reactor: Any, size: int = 4,
                 max_reconnect_delay: float = 5.0):
        self.dsn = dsn
        self._reactor = reactor
        self._max_delay = max_reconnect_delay
        self._closing = False
        self._connections = [self._make_connection() for _ in range(size)]
        self._idle = list(self._connections)
        self._semaphore = defer.DeferredSemaphore(size)
        self._listener: txpostgres.Connection | None = None
        self._channels: dict[str, list[Callable[[str], Any]]] = {}

    def _make_connection(self) -> txpostgres.Connection:
        detector = reconnection.DeadConnectionDetector(
            deathChecker=self._is_death,
            reconnectionIterator=lambda: retrying.simpleBackoffIterator(
                initialDelay=0.2, maxDelay=self._max_delay, factor=2, maxRetries=0, now=True
            ),
            reactor=self._reactor,
        )
        detector.addRecoveryHandler(lambda: log.info("database connection recovered"))
        return txpostgres.Connection(reactor=self._reactor, detector=detector)

    def _is_death(self, failure: Failure) -> bool:
        if self._closing:
            return False
        dead = failure.check(*_CONNECTION_LOST)
        if dead:
            log.warn("database connection lost ({reason}); reconnecting",
                     reason=_first_line(failure))
        return bool(dead)

    @defer.inlineCallbacks
    def start(self):
        """Open every connection; fails with ``StoreUnavailable`` naming the (redacted) DSN."""
        try:
            yield defer.gatherResults(
                [c.connect(self.dsn) for c in self._connections], consumeErrors=True
            )
        except defer.FirstError as e:
            self.close()
            raise StoreUnavailable(
                f"cannot connect to database {redact_dsn(self.dsn)}: "
                f"{_first_line(e.subFailure)}"
            ) from None
        return self

    def close(self) -> None:
        """Close every connection; nothing reconnects afterwards."""
        self._closing = True
        for c in self._connections + ([self._listener] if self._listener else []):
            if c._connection is not None:
                c.close()

    def stats(self) -> tuple[int, int]:
        """(live, total) connections in the pool, for the console's ``status``."""
        live = sum(1 for c in self._connections if self._is_live(c))
        return live, len(self._connections)

    @staticmethod
    def _is_live(c: txpostgres.Connection) -> bool:
        return (not c.detector.connectionIsDead and c._connection is not None
                and not c._connection.closed)

    def _run(self, method: str, *args: Any, **kwargs: Any) -> defer.Deferred:
        return self._semaphore.run(self._run_on_idle, method, *args, **kwargs)

    def _run_on_idle(self, method: str, *args: Any, **kwargs: Any) -> defer.Deferred:
        for c in self._idle:
            if self._is_live(c):
                break
        else:
            return defer.fail(StoreUnavailable(
                f"database {redact_dsn(self.dsn)} unavailable; reconnecting"))
        self._idle.remove(c)
        d = getattr(c, method)(*args, **kwargs)

        def put_back(result):
            self._idle.append(c)
            return result

        return d.addBoth(put_back).addErrback(wrap_error)

    def runQuery(self, sql: str, params: Any = None) -> defer.Deferred:
        """Run one statement in its own transaction; fires with all rows."""
        return self._run("runQuery", sql, params)

    def runOperation(self, sql: str, params: Any = None) -> defer.Deferred:
        """Run one statement in its own transaction; fires with None."""
        return self._run("runOperation", sql, params)

    def runInteraction(self, interaction: Callable[..., Any], *args: Any,
                       **kwargs: Any) -> defer.Deferred:
        """Run ``interaction(cursor, ...)`` in one transaction, committed if it succeeds."""
        return self._run("runInteraction", interaction, *args, **kwargs)

    @defer.inlineCallbacks
    def listen(self, channel: str, observer: Callable[[str], Any]):
        """Call ``observer(payload)`` on every NOTIFY on ``channel``, across reconnections."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", channel):
            raise ValueError(f"bad channel name {channel!r}")
        if self._listener is None:
            self._listener = self._make_connection()
            self._listener.detector.addRecoveryHandler(self._relisten)
            self._listener.addNotifyObserver(self._dispatch)
            try:
                yield self._listener.connect(self.dsn)
            except Exception:
                self._listener = None
                raise
        self._channels.setdefault(channel, []).append(observer)
        try:
            yield self._listener.runOperation(f"LISTEN {channel}")
        except Exception:
            raise wrap_error(Failure()).value from None

    def _relisten(self) -> defer.Deferred:
        log.info("re-listening on {channels}", channels=sorted(self._channels))
        return defer.gatherResults(
            [self._listener.runOperation(f"LISTEN {ch}") for ch in self._channels]
        )

    def _dispatch(self, notify: Any) -> None:
        for observer in self._channels.get(notify.channel, []):
            try:
                observer(notify.payload)
            except Exception:
                log.failure("NOTIFY observer for {channel} failed", channel=notify.channel)
