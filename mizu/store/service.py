"""The store service: the embedded or external PostgreSQL, the pool, and the schema."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger

from mizu.config import DatabaseConfig
from mizu.errors import StoreUnavailable
from mizu.store.callbacks import Callbacks
from mizu.store.catalog import Catalog
from mizu.store.config import ConfigTable
from mizu.store.embedded import EmbeddedPostgres
from mizu.store.idempotency import Idempotency
from mizu.store.ledger import Ledger
from mizu.store.migrations import migrate
from mizu.store.pool import Pool, redact_dsn
from mizu.store.usage import Usage
from mizu.store.users import Users

log = Logger()


TROUBLE_SHOWN = 300  # seconds ``status`` shows the server's last disk or I/O error


class StoreService(Service):
    """Starts first and stops last: every other service reads and writes through it."""

    name = "store"

    def __init__(self, config: DatabaseConfig, reactor, pool_size: int = 4):
        self._config = config
        self._reactor = reactor
        self._pool_size = pool_size
        self.embedded: EmbeddedPostgres | None = None
        self.pool: Pool | None = None
        self.schema_version: int | None = None
        self.config = ConfigTable(self)
        self.users = Users(self)
        self.callbacks = Callbacks(self, reactor)
        self.ledger = Ledger(self)
        self.catalog = Catalog(self)
        self.idempotency = Idempotency(self)
        self.usage = Usage(self)

    def runQuery(self, sql, params=None):
        """One statement on the pool; fires with its rows."""
        return self._live_pool().runQuery(sql, params)

    def runOperation(self, sql, params=None):
        """One statement on the pool; fires with None."""
        return self._live_pool().runOperation(sql, params)

    def runInteraction(self, interaction, *args, **kwargs):
        """A transaction on the pool."""
        return self._live_pool().runInteraction(interaction, *args, **kwargs)

    def _live_pool(self) -> Pool:
        if self.pool is None:
            raise StoreUnavailable("the store has not started")
        return self.pool

    @property
    def dsn(self) -> str:
        """The DSN in use, password redacted."""
        return redact_dsn(self.pool.dsn) if self.pool else ""

    @defer.inlineCallbacks
    def startService(self):
        """Start (embedded) PostgreSQL, connect and migrate; fires when usable."""
        Service.startService(self)
        dsn = self._config.dsn
        if not dsn:
            self.embedded = EmbeddedPostgres(self._config.datadir)
            dsn = yield self._in_thread(self.embedded.start)
            log.info("embedded PostgreSQL running in {pgdata}", pgdata=self.embedded.pgdata)
        pool = Pool(dsn, self._reactor, size=self._pool_size)
        self.pool = yield pool.start()
        self.schema_version = yield migrate(self.pool)
        log.info("store ready: {dsn}, schema version {version}",
                 dsn=self.dsn, version=self.schema_version)

    def status_lines(self) -> list[str]:
        """One line on the database for the console's ``status``, ending with its state.

        ``state=up`` while every connection is live, ``state=up (N reconnecting: why)``
        while some are, ``state=down (reconnecting: why)`` when none is, where ``why``
        is the last connection-loss reason; then, for 5 minutes after it, the server's
        last disk, I/O or shutdown error (a full disk leaves every connection up).
        """
        if self.pool is None:
            return ["database starting"]
        live, total = self.pool.stats()
        why = self.pool.last_loss or "not connected"
        if live == total:
            state = "up"
        elif live:
            state = f"up ({total - live} reconnecting: {why})"
        else:
            state = f"down (reconnecting: {why})"
        trouble = self.pool.server_trouble
        if trouble is not None and self._reactor.seconds() - trouble[0] < TROUBLE_SHOWN:
            state += (f" (last server error {self._reactor.seconds() - trouble[0]:.0f} s ago:"
                      f" {trouble[1]})")
        kind = f"embedded in {self.embedded.pgdata}" if self.embedded else "external"
        return [f"database {kind} dsn={self.dsn} schema={self.schema_version} "
                f"connections={live}/{total} state={state}"]

    @defer.inlineCallbacks
    def stopService(self):
        """Close the pool, then stop an embedded server."""
        Service.stopService(self)
        if self.pool is not None:
            self.pool.close()
        if self.embedded is not None:
            yield self._in_thread(self.embedded.stop)
            log.info("embedded PostgreSQL stopped")

    def _in_thread(self, f):
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f)
