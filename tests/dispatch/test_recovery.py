"""What a crash leaves behind is settled once: legs billed to their last heartbeat, rows
resumed or ended, reservations released."""

import time
from decimal import Decimal

import pytest_twisted
from twisted.internet import reactor

from mizu.dispatch.recovery import INTERRUPTED, recover
from mizu.store.callbacks import Callbacks
from mizu.store.ledger import Cdr, Ledger
from mizu.store.migrations import migrate
from mizu.store.pool import Pool
from mizu.store.users import Users


class Store:
    """The parts of the store recovery uses."""

    def __init__(self, pool):
        self.ledger, self.callbacks, self.users = Ledger(pool), Callbacks(pool), Users(pool)


@pytest_twisted.async_yield_fixture
async def store(database):
    pool = await Pool(database, reactor, size=4).start()
    await migrate(pool)
    yield Store(pool)
    pool.close()


@pytest_twisted.ensureDeferred
async def test_a_dead_nodes_calls_are_settled_resumed_and_released(store, sql):
    """Bridged for 95 s until the last heartbeat: both legs billed to it, the row failed
    'interrupted', a row still dialling A goes back to pending, nothing stays reserved;
    a second pass changes nothing."""
    sql("INSERT INTO tb_user (username, credit) VALUES ('alice', 10)")
    uid = sql("SELECT id FROM tb_user")[0][0]
    bridged = await store.callbacks.insert(userid=uid, anum="4917011", bnum="4420111",
                                           source="console", authenticated=True)
    dialling = await store.callbacks.insert(userid=uid, anum="4917022", source="console",
                                            authenticated=True)
    await store.callbacks.claim("dead", 10)
    await store.callbacks.set_status(bridged, "bridged")
    await store.ledger.reserve(uid, "cb1", Decimal(1), Decimal(3), node="dead")
    await store.ledger.reserve(uid, "cb9", Decimal(1), Decimal(1), node="dead")  # no CDR yet
    now = time.time()
    for leg, callee, price, answered in (("A", "4917011", "0.06", now - 120),
                                         ("B", "4420111", "0.60", now - 100)):
        await store.ledger.open_cdr(Cdr(
            leg=leg, caller="x", callee=callee, callbackid=bridged, userid=uid,
            starttime=answered - 5, answertime=answered, price=Decimal(price), initblock=1,
            increment=1, session="cb1", node="dead"))
    # the last heartbeat came 5 s ago: legs ran 115 s and 95 s until then
    sql("UPDATE tb_cdrs SET heartbeat = to_timestamp(%s)", (now - 5,))

    done = await recover(store, "dead", 30, max_attempts=3)
    assert (done.legs, done.resumed, done.ended, done.released) == (2, 1, 0, 1)
    rows = sql("SELECT leg, result, billedduration, cost FROM tb_cdrs ORDER BY leg")
    assert rows == [("A", "interrupted", 115, Decimal("0.115000")),
                    ("B", "interrupted", 95, Decimal("0.950000"))]
    assert sql("SELECT credit FROM tb_user")[0][0] == Decimal("10") - Decimal("1.065")
    assert sql("SELECT status, reason FROM tb_callbacks WHERE id = %s", (bridged,)) == [
        ("failed", INTERRUPTED)]
    assert sql("SELECT status FROM tb_callbacks WHERE id = %s", (dialling,)) == [("pending",)]
    assert sql("SELECT count(*) FROM tb_reservations")[0][0] == 0

    again = await recover(store, "dead", 30, max_attempts=3)
    assert not again
    assert sql("SELECT credit FROM tb_user")[0][0] == Decimal("10") - Decimal("1.065")


@pytest_twisted.ensureDeferred
async def test_live_nodes_are_left_alone_and_silent_ones_are_recovered(store, sql):
    """Another node's call with a fresh heartbeat is not touched; a silent one is."""
    sql("INSERT INTO tb_user (username, credit) VALUES ('alice', 10)")
    uid = sql("SELECT id FROM tb_user")[0][0]
    cbid = await store.callbacks.insert(userid=uid, anum="4917011", source="console")
    await store.callbacks.claim("other", 10)
    await store.callbacks.set_status(cbid, "ivr")
    assert not await recover(store, None, 30, max_attempts=3)
    assert sql("SELECT status FROM tb_callbacks")[0][0] == "ivr"
    sql("UPDATE tb_callbacks SET heartbeat = now() - interval '1 minute',"
        " updated = now() - interval '1 minute'")
    done = await recover(store, None, 30, max_attempts=3)
    assert done.ended == 1
    assert sql("SELECT status, reason FROM tb_callbacks")[0] == ("failed", INTERRUPTED)
