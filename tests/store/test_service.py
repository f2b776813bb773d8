"""The store service's console status line against a real PostgreSQL."""

import pytest_twisted
from twisted.internet import reactor

from mizu.config import DatabaseConfig
from mizu.store.migrations import LATEST
from mizu.store.service import StoreService
from tests.store.support import allow_connections, until


@pytest_twisted.ensureDeferred
async def test_status_says_whether_the_database_is_up_or_down(database, sql):
    """The status line ends ``state=up`` with every connection live, names the
    reconnecting ones while some are down, and says ``state=down (reconnecting: why)``
    with the last connection-loss reason when none is live."""
    store = StoreService(DatabaseConfig(dsn=database), reactor, pool_size=2)
    await store.startService()
    try:
        [line] = store.status_lines()
        assert line.startswith("database external dsn=") and f"schema={LATEST}" in line
        assert line.endswith("connections=2/2 state=up")
        allow_connections(database, False)
        [(one,)] = await store.runQuery("SELECT pg_backend_pid()")
        sql("SELECT pg_terminate_backend(%s)", (one,))
        await until(lambda: store.pool.stats() == (1, 2))
        [line] = store.status_lines()
        assert "connections=1/2 state=up (1 reconnecting: " in line
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        await until(lambda: store.pool.stats() == (0, 2))
        await until(lambda: "accepting connections" in store.status_lines()[0])
        [line] = store.status_lines()
        assert "connections=0/2 state=down (reconnecting: " in line
        assert line.endswith("is not currently accepting connections)")
        allow_connections(database, True)
        await until(lambda: store.status_lines()[0].endswith("connections=2/2 state=up"))
    finally:
        allow_connections(database, True)
        await store.stopService()
