"""Versioned migrations against a real PostgreSQL: every SPEC §3 table and column."""

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import reactor

from mizu.errors import SchemaTooNew
from mizu.store.migrations import LATEST, MIGRATIONS, migrate
from mizu.store.pool import Pool

SPEC_COLUMNS = {
    "tb_user": {"id", "username", "password", "pincode", "usertype", "credit", "iscallback",
                "anumberlookup", "ivrid", "authip", "callerid"},
    "tb_anumbers": {"anumber", "userid"},
    "tb_ccampaigns": {"id", "name", "ivrscript"},
    "tb_config": {"name", "value"},
    "tb_rates": {"prefix", "price", "initblock", "increment", "connectfee"},
    "tb_routes": {"prefix", "gateway"},
    "tb_callbacks": {"id", "userid", "anum", "bnum", "source", "status", "reason", "created",
                     "updated"},
    "tb_cdrs": {"id", "callbackid", "userid", "leg", "caller", "callee", "accessnumber",
                "starttime", "answertime", "endtime", "duration", "billedduration", "cost",
                "result"},
}


@pytest.fixture
def pool(database):
    p = Pool(database, reactor, size=2)
    yield p
    p.close()


@pytest_twisted.ensureDeferred
async def test_migrate_from_empty_creates_every_table_and_column(pool, sql):
    """A new database gets every table and column of SPEC §3 and records the version."""
    await pool.start()
    assert await migrate(pool) == LATEST
    for table, columns in SPEC_COLUMNS.items():
        rows = sql("SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                   (table,))
        assert columns <= {r[0] for r in rows}, table
    assert sql("SELECT version FROM mizu_schema ORDER BY version") == [
        (version,) for version, _ in MIGRATIONS]


@pytest_twisted.ensureDeferred
async def test_migrate_again_changes_nothing(pool, sql):
    """A second run finds the schema current and applies nothing."""
    await pool.start()
    await migrate(pool)
    sql("INSERT INTO tb_config (name, value) VALUES ('callbackdelay', '2')")
    assert await migrate(pool) == LATEST
    assert sql("SELECT count(*) FROM mizu_schema") == [(len(MIGRATIONS),)]
    assert sql("SELECT value FROM tb_config") == [("2",)]


@pytest_twisted.ensureDeferred
async def test_a_later_migration_applies_on_top(pool, sql):
    """Migrations run in order; only versions above the current one are applied."""
    await pool.start()
    await migrate(pool)
    extra = MIGRATIONS + [(LATEST + 1, ["ALTER TABLE tb_user ADD COLUMN note text"])]
    assert await migrate(pool, extra) == LATEST + 1
    assert sql("SELECT max(version) FROM mizu_schema") == [(LATEST + 1,)]


@pytest_twisted.ensureDeferred
async def test_newer_schema_refuses(pool, sql):
    """A schema written by a newer mizu stops the start with a clear message."""
    await pool.start()
    await migrate(pool)
    sql("INSERT INTO mizu_schema (version) VALUES (%s)", (LATEST + 5,))
    with pytest.raises(SchemaTooNew, match=f"version {LATEST + 5}, newer than this mizu"):
        await migrate(pool)


@pytest_twisted.ensureDeferred
async def test_operators_provision_with_plain_inserts(pool, sql):
    """INSERTs naming only the SPEC columns work: ids and every other column default."""
    await pool.start()
    await migrate(pool)
    sql("INSERT INTO tb_user (username, password, credit, iscallback) "
        "VALUES ('4930555', 'pw', 5.00, 6)")
    (uid,) = sql("SELECT id FROM tb_user WHERE username = '4930555'")[0]
    sql("INSERT INTO tb_anumbers (anumber, userid) VALUES ('4917012345', %s)", (uid,))
    sql("INSERT INTO tb_ccampaigns (name, ivrscript) VALUES ('cc', 'callingcard')")
    sql("INSERT INTO tb_rates (prefix, price) VALUES ('49', 0.02)")
    sql("INSERT INTO tb_routes (prefix, gateway) VALUES ('49', 'sip:{number}@127.0.0.1')")
    sql("INSERT INTO tb_callbacks (userid, anum, bnum) VALUES (%s, '4917012345', '12')", (uid,))
    sql("INSERT INTO tb_cdrs (leg, caller, callee) VALUES ('A', '1', '2')")
    assert sql("SELECT usertype, anumberlookup, ivrid, pincode FROM tb_user") == [
        ("enduser", 0, 0, "")]
    assert sql("SELECT source, status FROM tb_callbacks") == [("db", "pending")]
    with pytest.raises(psycopg2.errors.CheckViolation):
        sql("INSERT INTO tb_callbacks (anum, status) VALUES ('1', 'lost')")


@pytest_twisted.ensureDeferred
async def test_queue_and_rating_indexes_exist(pool, sql):
    """The pending-queue and prefix indexes the dispatcher and rating rely on exist."""
    await pool.start()
    await migrate(pool)
    names = {r[0] for r in sql("SELECT indexname FROM pg_indexes WHERE schemaname='public'")}
    assert {"tb_callbacks_pending", "tb_rates_prefix", "tb_routes_prefix",
            "tb_cdrs_callbackid", "tb_user_username_key", "tb_anumbers_anumber_key"} <= names
