"""The txpostgres pool against a real PostgreSQL: errors mapped, connections recovered."""

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from mizu.errors import StoreError, StoreUnavailable
from mizu.store.migrations import migrate
from mizu.store.pool import Pool, redact_dsn
from tests.store.support import allow_connections, outcome, sleep, until


def test_redact_dsn_hides_passwords():
    """Passwords never reach a log line or an error message."""
    assert redact_dsn("postgresql://mizu:s3cret@db:5432/mizu") == \
        "postgresql://mizu:***@db:5432/mizu"
    assert redact_dsn("host=db password=s3cret dbname=m") == "host=db password=*** dbname=m"
    assert redact_dsn("host=db password='a b' user=x") == "host=db password=*** user=x"
    assert redact_dsn("postgresql://mizu@db/mizu") == "postgresql://mizu@db/mizu"


@pytest_twisted.ensureDeferred
async def test_unreachable_database_names_the_dsn_without_password():
    """Connecting to nothing fails with StoreUnavailable naming the redacted DSN."""
    pool = Pool("postgresql://mizu:topsecret@127.0.0.1:1/mizu?connect_timeout=3", reactor)
    with pytest.raises(StoreUnavailable) as e:
        await pool.start()
    assert "postgresql://mizu:***@127.0.0.1:1/mizu" in str(e.value)
    assert "topsecret" not in str(e.value)


@pytest_twisted.ensureDeferred
async def test_driver_errors_become_store_errors(database):
    """SQL errors arrive as StoreError with the SQLSTATE; the pool stays usable."""
    pool = await Pool(database, reactor, size=2).start()
    try:
        await migrate(pool)
        with pytest.raises(StoreError) as e:
            await pool.runQuery("SELEC 1")
        assert e.value.pgcode == "42601"
        await pool.runOperation("INSERT INTO tb_config (name) VALUES ('x')")
        with pytest.raises(StoreError) as e:
            await pool.runOperation("INSERT INTO tb_config (name) VALUES ('x')")
        assert e.value.pgcode == "23505"

        def failing(cursor):
            d = cursor.execute("INSERT INTO tb_config (name) VALUES ('y')")
            return d.addCallback(lambda _: cursor.execute("SELECT 1/0"))

        with pytest.raises(StoreError, match="division by zero"):
            await pool.runInteraction(failing)
        # the transaction was rolled back as a whole
        assert await pool.runQuery("SELECT name FROM tb_config ORDER BY name") == [("x",)]
    finally:
        pool.close()


async def eventually(check, timeout=15.0):
    """Poll an async check on the real clock until it passes (PostgreSQL is real)."""
    deadline = reactor.seconds() + timeout
    while True:
        try:
            return await check()
        except (StoreError, AssertionError):
            if reactor.seconds() > deadline:
                raise
        await task.deferLater(reactor, 0.1, lambda: None)


def backend_pids(sql):
    return {r[0] for r in sql("SELECT pid FROM pg_stat_activity WHERE datname ="
                              " current_database() AND pid <> pg_backend_pid()")}


def terminate_backends(sql):
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest_twisted.ensureDeferred
async def test_pool_recovers_after_backends_are_terminated(database, sql):
    """After pg_terminate_backend on every connection, queries work again by themselves."""
    pool = await Pool(database, reactor, size=3, max_reconnect_delay=0.5).start()
    try:
        assert await pool.runQuery("SELECT 1") == [(1,)]
        before = backend_pids(sql)
        assert len(before) == 3
        terminate_backends(sql)
        errors = []

        async def query():
            try:
                return await pool.runQuery("SELECT 2")
            except StoreError as e:
                errors.append(e)
                raise

        assert await eventually(query) == [(2,)]
        assert all(isinstance(e, StoreUnavailable) for e in errors)

        async def all_live():
            assert pool.stats() == (3, 3)

        await eventually(all_live)
        after = backend_pids(sql)
        assert len(after) == 3 and not after & before  # three new connections
    finally:
        pool.close()


@pytest_twisted.ensureDeferred
async def test_listen_survives_a_lost_connection(database, sql):
    """NOTIFY keeps arriving after the LISTEN connection is killed and re-established."""
    pool = await Pool(database, reactor, size=1, max_reconnect_delay=0.5).start()
    try:
        await migrate(pool)
        got = []
        await pool.listen("mizu_callbacks", got.append)
        sql("INSERT INTO tb_callbacks (anum) VALUES ('111')")

        async def received(n):
            assert len(got) == n

        await eventually(lambda: received(1))
        terminate_backends(sql)

        async def notify_again():
            sql("INSERT INTO tb_callbacks (anum) VALUES ('222')")
            await task.deferLater(reactor, 0.3, lambda: None)
            assert any(p != got[0] for p in got)

        await eventually(notify_again)
        assert got[0] == sql("SELECT id::text FROM tb_callbacks WHERE anum = '111'")[0][0]
    finally:
        pool.close()



async def kill_one(pool, database, sql):
    """Kill one connection of a started pool of two, and keep it from reconnecting
    (until ``allow_connections(database, True)``); returns the live one's backend pid."""
    pids = backend_pids(sql)
    [(victim,)] = await pool.runQuery("SELECT pg_backend_pid()")
    allow_connections(database, False)
    sql("SELECT pg_terminate_backend(%s)", (victim,))
    await until(lambda: pool.stats() == (1, 2))
    [live] = pids - {victim}
    return live


@pytest_twisted.ensureDeferred
async def test_queries_wait_for_the_live_connection_while_another_reconnects(database, sql):
    """With one connection dead and one live, more concurrent queries than live
    connections all succeed on the live one, in the order they were issued."""
    pool = await Pool(database, reactor, size=2, max_reconnect_delay=0.3).start()
    try:
        live = await kill_one(pool, database, sql)
        done = []

        def finished(rows, n):
            done.append(n)
            return rows

        queries = [pool.runQuery("SELECT pg_backend_pid(), pg_sleep(0.05), %s", (n,))
                   .addCallback(finished, n) for n in range(4)]
        results = await defer.gatherResults(queries, consumeErrors=True)
        assert [r[0][0] for r in results] == [live] * 4
        assert [r[0][2] for r in results] == [0, 1, 2, 3]
        assert done == [0, 1, 2, 3]  # first come, first served
        assert pool.stats() == (1, 2)  # the dead one was reconnecting all along
    finally:
        allow_connections(database, True)
        pool.close()


@pytest_twisted.ensureDeferred
async def test_a_recovered_connection_serves_waiting_queries(database, sql):
    """A query waiting while the only live connection is busy runs on the dead one as
    soon as it recovers, without waiting for the busy one."""
    pool = await Pool(database, reactor, size=2, max_reconnect_delay=0.3).start()
    try:
        live = await kill_one(pool, database, sql)
        busy = pool.runQuery("SELECT pg_sleep(30)")
        busy_done = outcome(busy)
        waiting = pool.runQuery("SELECT pg_backend_pid()")
        waiting_done = outcome(waiting)
        await sleep(0.3)
        assert not waiting_done
        allow_connections(database, True)
        [(pid,)] = await waiting
        assert pid != live
        assert not busy_done
        assert pool.stats() == (2, 2)
    finally:
        allow_connections(database, True)
        pool.close()
    with pytest.raises(StoreUnavailable):
        await busy


@pytest_twisted.ensureDeferred
async def test_waiters_fail_at_once_when_the_last_live_connection_dies(database, sql):
    """Queries wait while a live connection is busy; when that last live connection
    dies they all fail with StoreUnavailable at once instead of hanging."""
    pool = await Pool(database, reactor, size=2, max_reconnect_delay=0.3).start()
    try:
        live = await kill_one(pool, database, sql)
        busy = pool.runQuery("SELECT pg_sleep(30)")
        waiting = [pool.runQuery("SELECT 1") for _ in range(3)]
        outcomes = [outcome(d) for d in waiting]
        await sleep(0.3)
        assert outcomes == [[], [], []]
        start = reactor.seconds()
        sql("SELECT pg_terminate_backend(%s)", (live,))
        for d in [busy, *waiting]:
            with pytest.raises(StoreUnavailable):
                await d
        assert reactor.seconds() - start < 3
        assert pool.stats() == (0, 2)
    finally:
        allow_connections(database, True)
        pool.close()


@pytest_twisted.ensureDeferred
async def test_no_live_connection_fails_fast_then_recovers(database, sql):
    """With every connection dead a query fails at once with StoreUnavailable naming
    the last loss; once connections are allowed again queries work by themselves."""
    pool = await Pool(database, reactor, size=2, max_reconnect_delay=0.3).start()
    try:
        allow_connections(database, False)
        terminate_backends(sql)
        await until(lambda: pool.stats() == (0, 2))
        await until(lambda: "not currently accepting connections" in (pool.last_loss or ""))
        start = reactor.seconds()
        with pytest.raises(StoreUnavailable, match="not currently accepting connections"):
            await pool.runQuery("SELECT 1")
        assert reactor.seconds() - start < 0.5
        allow_connections(database, True)
        await until(lambda: pool.stats() == (2, 2))
        assert await pool.runQuery("SELECT 1") == [(1,)]
    finally:
        allow_connections(database, True)
        pool.close()


@pytest_twisted.ensureDeferred
async def test_close_fails_waiting_queries_and_stops_reconnecting(database, sql):
    """Closing the pool fails queued queries with StoreUnavailable, and a connection
    that was reconnecting gives up instead of connecting again."""
    pool = await Pool(database, reactor, size=2, max_reconnect_delay=0.1).start()
    try:
        live = await kill_one(pool, database, sql)
        busy = pool.runQuery("SELECT pg_sleep(30)")
        waiting = pool.runQuery("SELECT 1")
        await sleep(0.1)
    finally:
        pool.close()
        allow_connections(database, True)
    for d in (busy, waiting):
        with pytest.raises(StoreUnavailable):
            await d
    await sleep(0.5)
    # the busy backend sleeps on, unaware its client left; no new one appeared
    assert backend_pids(sql) <= {live}
    with pytest.raises(StoreUnavailable, match="closed"):
        await pool.runQuery("SELECT 1")
