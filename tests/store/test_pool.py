"""The txpostgres pool against a real PostgreSQL: errors mapped, connections recovered."""

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from mizu.errors import StoreError, StoreUnavailable
from mizu.store.migrations import migrate
from mizu.store.pool import Pool, redact_dsn


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
