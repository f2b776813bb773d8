"""Tables the core loads whole (rates, routes, campaigns) and the user lookups it adds."""

from decimal import Decimal

import pytest_twisted
from twisted.internet import reactor

from mizu.store.catalog import Catalog
from mizu.store.migrations import migrate
from mizu.store.pool import Pool
from mizu.store.users import Users


@pytest_twisted.async_yield_fixture
async def pool(database):
    """A started pool on a migrated database."""
    p = await Pool(database, reactor, size=2).start()
    await migrate(p)
    yield p
    p.close()


@pytest_twisted.ensureDeferred
async def test_catalog_reads_rates_routes_and_campaigns(pool, sql):
    """Rows provisioned with plain SQL come back with their defaults filled in."""
    sql("INSERT INTO tb_rates (prefix, price) VALUES ('49', 0.02)")
    sql("INSERT INTO tb_rates (prefix, price, initblock, increment, connectfee)"
        " VALUES ('4917', 0.19, 30, 6, 0.05)")
    sql("INSERT INTO tb_routes (prefix, gateway) VALUES ('', 'sip:{number}@gw0'),"
        " ('49', 'sip:{number}@gw1')")
    sql("INSERT INTO tb_ccampaigns (name, ivrscript) VALUES ('cards', 'callingcard')")
    sql("INSERT INTO tb_ccampaigns (name) VALUES ('plain')")
    catalog = Catalog(pool)
    assert sorted(await catalog.rates()) == [
        ("49", Decimal("0.020000"), 60, 60, Decimal("0.000000")),
        ("4917", Decimal("0.190000"), 30, 6, Decimal("0.050000"))]
    assert sorted(await catalog.routes()) == [("", "sip:{number}@gw0"),
                                              ("49", "sip:{number}@gw1")]
    campaigns = await catalog.campaigns()
    assert sorted(campaigns.values()) == [("cards", "callingcard"), ("plain", "callback")]
    [(cards,)] = sql("SELECT id FROM tb_ccampaigns WHERE name = 'cards'")
    assert campaigns[cards] == ("cards", "callingcard")


@pytest_twisted.ensureDeferred
async def test_catalog_of_an_empty_database_is_empty(pool):
    """No rows: empty rates, routes and campaigns, not errors."""
    catalog = Catalog(pool)
    assert list(await catalog.rates()) == []
    assert await catalog.routes() == []
    assert await catalog.campaigns() == {}


@pytest_twisted.ensureDeferred
async def test_users_by_id_and_by_pincode(pool, sql):
    """by_id and by_pincode find the user; unknown ones and the empty PIN find nobody."""
    sql("INSERT INTO tb_user (username, pincode, credit) VALUES ('alice', '1234', 2),"
        " ('bob', '', 1)")
    [(alice,)] = sql("SELECT id FROM tb_user WHERE username = 'alice'")
    users = Users(pool)
    assert (await users.by_id(alice)).username == "alice"
    assert await users.by_id(alice + 100) is None
    found = await users.by_pincode("1234")
    assert (found.id, found.credit) == (alice, Decimal("2.0000"))
    assert await users.by_pincode("9999") is None
    assert await users.by_pincode("") is None


@pytest_twisted.ensureDeferred
async def test_add_anumber_registers_a_caller_number_once(pool, sql):
    """add_anumber stores a new caller number (True) and leaves a known one, even one
    owned by someone else, alone (False)."""
    sql("INSERT INTO tb_user (username) VALUES ('alice'), ('bob')")
    ids = dict(sql("SELECT username, id FROM tb_user"))
    users = Users(pool)
    assert await users.add_anumber("4917011", ids["alice"]) is True
    assert await users.add_anumber("4917011", ids["bob"]) is False
    assert (await users.by_anumber("4917011")).username == "alice"
    assert sql("SELECT count(*) FROM tb_anumbers") == [(1,)]
