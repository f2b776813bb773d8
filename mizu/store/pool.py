"""A txpostgres connection pool that outlives PostgreSQL restarts and maps driver errors."""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import psycopg2.errors
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


# SQLSTATE classes of a server that cannot do the work asked (not of a bad statement):
# insufficient resources (53100 disk full), operator intervention, system (I/O) errors.
_SERVER_TROUBLE = ("53", "57", "58")


def wrap_error(failure: Failure) -> Failure:
    """Turn a driver failure into a ``StoreError``; mizu's own errors pass unchanged."""
    if failure.check(MizuError):
        return failure
    # Deadlocks, serialisation failures and a full disk are OperationalErrors too, but
    # the server sent them over a healthy connection: only a code of connection trouble
    # (08, 57P: the server shutting down) or none at all means the connection is gone.
    code = getattr(failure.value, "pgcode", None) or ""
    if failure.check(*_CONNECTION_LOST) and (not code or code[:2] == "08"
                                             or code[:3] == "57P"):
        return Failure(StoreUnavailable(f"database connection lost: {_first_line(failure)}"))
    if failure.check(psycopg2.Error):
        exc = failure.value
        wrapped = StoreError(f"database error {exc.pgcode or ''}: {_first_line(failure)}".strip())
        wrapped.pgcode = exc.pgcode
        # rollbacks (deadlock, serialisation) and a server short of resources pass
        wrapped.transient = code[:2] in ("40", *_SERVER_TROUBLE)
        return Failure(wrapped)
    return failure


def _first_line(failure: Failure) -> str:
    return first_line(failure.value)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (driver messages run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Detector(reconnection.DeadConnectionDetector):
    """txpostgres's detector, keeping the pool informed and stopping once it closes."""

    def __init__(self, pool: Pool):
        super().__init__(deathChecker=pool._is_death, reconnectionIterator=pool._backoff,
                         reactor=pool._reactor)
        self._pool = pool

    def startReconnecting(self, f: Failure) -> None:
        """Retry with backoff until connected again or the pool closes."""
        log.warn("database connection lost ({reason}); reconnecting", reason=_first_line(f))
        self._pool._note_loss(f)
        rc = retrying.RetryingCall(self.reconnect)
        rc.reactor = self.reactor
        d = rc.start(self.reconnectionIterator())
        d.addCallback(lambda _: self.connectionRecovered())
        # The retries only end, with the last attempt's failure, once the pool closes.
        d.addErrback(lambda f: None if self._pool._closing else log.failure(
            "database reconnection stopped", f))
        # Waiters fail now if this was the last live connection.
        self._pool._serve_waiters()

    def reconnect(self) -> defer.Deferred:
        """One attempt to connect again; its failure is remembered as the latest reason."""
        if self._pool._closing:
            return defer.fail(StoreUnavailable("the database pool is closed"))
        return super().reconnect().addErrback(self._attempt_failed)

    def _attempt_failed(self, f: Failure) -> Failure:
        self._pool._note_loss(f)
        # A failed psycopg2 connection left open makes the reactor poll it again and log
        # the same error as unhandled. Closing what is half-open may itself fail.
        with contextlib.suppress(Exception):
            self.reconnectable.close()
        return f


class _Connection(txpostgres.Connection):
    """txpostgres's connection, quiet when the server goes away while it is idle.

    txpostgres lets the driver's error escape ``doRead`` to the reactor, which logs it as
    an "Unhandled Error" traceback (one per pooled connection at every database restart)
    before closing the connection. Returned instead, the error closes it the same way
    (``connectionLost`` with it as the reason, so the detector reconnects) and the pool
    logs one warning.
    """

    def doRead(self):
        try:
            return super().doRead()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            return e
        except ValueError as e:
            # txpostgres watches the socket again after the driver closed it (fd -1).
            return error.ConnectionLost(f"the database closed the connection ({e})")


class Pool:
    """``size`` autocommit connections plus one for LISTEN, each reconnecting on its own.

    A dead connection is detected (by a failed query or by the server closing its socket)
    and reconnected in the background with backoff. A query takes an idle live
    connection; when every live one is busy it waits in line (first come, first served)
    for one to come back or for a dead one to recover. It fails at once with
    ``StoreUnavailable`` only when no connection is live at all, and so do the queries
    already waiting when the last live connection dies.
    """

    def __init__(self, dsn: str, reactor: Any, size: int = 4,
                 max_reconnect_delay: float = 5.0):
        self.dsn = dsn
        self._reactor = reactor
        self._max_delay = max_reconnect_delay
        self._closing = False
        self._last_loss: str | None = None
        self.server_trouble: tuple[float, str] | None = None  # (when, what): see _noted
        self._connections = [self._make_connection() for _ in range(size)]
        # Longest idle first, dead ones included: a dead one is skipped until it recovers.
        self._idle = list(self._connections)
        self._waiters: deque[defer.Deferred] = deque()
        self._listener: txpostgres.Connection | None = None
        self._channels: dict[str, list[Callable[[str], Any]]] = {}

    def _make_connection(self) -> txpostgres.Connection:
        detector = _Detector(self)
        detector.addRecoveryHandler(lambda: log.info("database connection recovered"))
        detector.addRecoveryHandler(self._serve_waiters)
        return _Connection(reactor=self._reactor, detector=detector)

    def _backoff(self) -> Iterator[float]:
        for delay in retrying.simpleBackoffIterator(
            initialDelay=0.2, maxDelay=self._max_delay, factor=2, maxRetries=0, now=True
        ):
            if self._closing:
                return
            yield delay

    def _is_death(self, failure: Failure) -> bool:
        return (not self._closing and bool(failure.check(*_CONNECTION_LOST))
                and not failure.check(psycopg2.errors.TransactionRollbackError))

    def _note_loss(self, failure: Failure) -> None:
        self._last_loss = _first_line(failure)

    @property
    def last_loss(self) -> str | None:
        """Why a connection was last lost or last failed to reconnect, or None if never."""
        return self._last_loss

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
        """Close every connection and fail waiting queries; nothing reconnects afterwards."""
        self._closing = True
        for c in self._connections + ([self._listener] if self._listener else []):
            if c._connection is not None:
                c.close()
        self._fail_waiters()

    def stats(self) -> tuple[int, int]:
        """(live, total) connections in the pool, for the console's ``status``."""
        live = sum(1 for c in self._connections if self._is_live(c))
        return live, len(self._connections)

    @staticmethod
    def _is_live(c: txpostgres.Connection) -> bool:
        return (not c.detector.connectionIsDead and c._connection is not None
                and not c._connection.closed)

    def _unavailable(self) -> StoreUnavailable:
        if self._closing:
            return StoreUnavailable("the database pool is closed")
        reason = f": {self._last_loss}" if self._last_loss else ""
        return StoreUnavailable(
            f"database {redact_dsn(self.dsn)} unavailable (reconnecting{reason})")

    def _take_idle(self) -> txpostgres.Connection | None:
        for c in self._idle:
            if self._is_live(c):
                self._idle.remove(c)
                return c
        return None

    def _acquire(self) -> defer.Deferred:
        if not self._closing:
            c = self._take_idle()
            if c is not None:
                return defer.succeed(c)
            if any(self._is_live(c) for c in self._connections):
                d = defer.Deferred(self._waiters.remove)
                self._waiters.append(d)
                return d
        return defer.fail(self._unavailable())

    def _release(self, c: txpostgres.Connection) -> None:
        self._idle.append(c)
        self._serve_waiters()

    def _serve_waiters(self) -> None:
        """Hand idle live connections to waiters in order; fail them all if none is live."""
        while self._waiters:
            c = self._take_idle()
            if c is None:
                break
            self._waiters.popleft().callback(c)
        if self._waiters and not any(self._is_live(c) for c in self._connections):
            self._fail_waiters()

    def _fail_waiters(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for d in waiters:
            d.errback(self._unavailable())

    def _run(self, method: str, *args: Any, **kwargs: Any) -> defer.Deferred:
        def run_on(c: txpostgres.Connection) -> defer.Deferred:
            def put_back(result):
                self._release(c)
                return result

            d = defer.maybeDeferred(getattr(c, method), *args, **kwargs)
            return d.addBoth(put_back)

        return self._acquire().addCallback(run_on).addErrback(wrap_error).addErrback(
            self._noted)

    def _noted(self, failure: Failure) -> Failure:
        """Remember a server that cannot do its work (disk full, read only, I/O error,
        shutting down) for ``status``: its connections are up, so nothing else shows it."""
        code = getattr(failure.value, "pgcode", None) or ""
        if code[:2] in _SERVER_TROUBLE or code == "25006":
            self.server_trouble = (self._reactor.seconds(), first_line(failure.value))
        return failure

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
