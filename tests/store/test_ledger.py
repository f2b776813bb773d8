"""Credit, reservations and CDRs against a real PostgreSQL, concurrency included."""

import random
import time
from decimal import Decimal

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher

from mizu.errors import InsufficientCredit
from mizu.store.ledger import Cdr, Ledger, Reservation
from mizu.store.migrations import migrate
from mizu.store.pool import Pool

D = Decimal


@pytest_twisted.async_yield_fixture
async def ledger(database):
    """A Ledger on a migrated database, through a pool of 8 connections."""
    pool = await Pool(database, reactor, size=8).start()
    await migrate(pool)
    yield Ledger(pool)
    pool.close()


def user(sql, credit, name="alice"):
    sql("INSERT INTO tb_user (username, credit) VALUES (%s, %s)", (name, credit))
    return sql("SELECT id FROM tb_user WHERE username = %s", (name,))[0][0]


def reserved(sql):
    return sql("SELECT coalesce(sum(amount), 0) FROM tb_reservations")[0][0]


@pytest_twisted.ensureDeferred
async def test_reserve_holds_what_is_available(ledger, sql):
    """reserve holds ``wanted`` when available, else all that is left if that reaches
    ``minimum``; available shrinks accordingly and the credit itself is untouched."""
    uid = user(sql, "3.0000")
    first = await ledger.reserve(uid, "s1", D("0.5"), D("2"), node="n1")
    assert first == Reservation(first.id, uid, "s1", D("2.0000"))
    assert await ledger.available(uid) == D("1.0000")
    second = await ledger.reserve(uid, "s2", D("0.5"), D("2"))
    assert second.amount == D("1.0000")
    assert await ledger.available(uid) == D(0)
    assert await ledger.balance(uid) == D("3.0000")
    assert sql("SELECT session, node FROM tb_reservations ORDER BY id") == [
        ("s1", "n1"), ("s2", "")]


@pytest_twisted.ensureDeferred
async def test_reserve_refuses_below_minimum(ledger, sql):
    """Less available than ``minimum``, or no such user: InsufficientCredit, nothing held."""
    uid = user(sql, "1.0000")
    await ledger.reserve(uid, "s1", D("0.2"), D("0.7"))
    with pytest.raises(InsufficientCredit, match=r"has 0.3000 available .* less than the 0.5"):
        await ledger.reserve(uid, "s2", D("0.5"), D("1"))
    with pytest.raises(InsufficientCredit, match="does not exist"):
        await ledger.reserve(uid + 1, "s3", D("0.1"), D("1"))
    assert sql("SELECT session FROM tb_reservations") == [("s1",)]
    assert await ledger.balance(uid + 1) is None
    assert await ledger.available(uid + 1) == D(0)


@pytest_twisted.ensureDeferred
async def test_200_concurrent_reservations_never_overdraw(ledger, sql):
    """200 calls reserving at once on credit for 20: exactly 20 succeed, the rest get
    InsufficientCredit; settling them all at once leaves credit - charged, >= 0."""
    uid = user(sql, "10.0000")
    attempts = [ledger.reserve(uid, f"s{n}", D("0.5"), D("0.5")) for n in range(200)]
    outcomes = await defer.gatherResults(
        [d.addErrback(lambda f: f.trap(InsufficientCredit) and None) for d in attempts])
    won = [r for r in outcomes if r is not None]
    assert len(won) == 20
    assert reserved(sql) == D("10.0000") and sum(r.amount for r in won) <= D(10)
    rng = random.Random(7)
    costs = [(r.amount * D(rng.uniform(0.2, 1.0))).quantize(D("0.0001")) for r in won]
    charged = await defer.gatherResults([
        ledger.settle(uid, r.session, [Cdr("B", "1", "2", userid=uid, cost=c)])
        for r, c in zip(won, costs, strict=True)])
    assert charged == costs
    final = await ledger.balance(uid)
    assert final >= 0 and final == D("10.0000") - sum(charged)
    assert reserved(sql) == 0


@pytest_twisted.ensureDeferred
async def test_settle_records_charges_and_finishes_the_callback(ledger, sql):
    """settle inserts the CDRs, charges their summed cost, drops the session's
    reservation and finishes the callback row, all at once; the CDRs get their ids."""
    uid = user(sql, "5.0000")
    sql("INSERT INTO tb_callbacks (userid, anum, status) VALUES (%s, '1', 'bridged')", (uid,))
    cbid = sql("SELECT id FROM tb_callbacks")[0][0]
    await ledger.reserve(uid, "sess", D("1"), D("3"))
    await ledger.reserve(uid, "other", D("1"), D("1"))
    now = time.time()
    a = Cdr("A", "4930555", "4917011", callbackid=cbid, userid=uid, starttime=now - 70,
            answertime=now - 65, endtime=now, duration=65, billedduration=120,
            cost=D("0.1200"), result="answered", price=D("0.06"), initblock=60,
            increment=60, session="sess", node="n1")
    b = Cdr("B", "4917011", "4930222", callbackid=cbid, userid=uid, starttime=now - 40,
            result="no answer", session="sess")
    assert await ledger.settle(uid, "sess", [a, b], callback=(cbid, "completed", "")) == \
        D("0.1200")
    assert await ledger.balance(uid) == D("4.8800")
    assert sql("SELECT session FROM tb_reservations") == [("other",)]
    assert sql("SELECT status FROM tb_callbacks") == [("completed",)]
    rows = sql("SELECT id, leg, duration, billedduration, cost, result, price, initblock,"
               " increment, settled, extract(epoch FROM answertime)::float8, endtime IS NULL"
               " FROM tb_cdrs ORDER BY id")
    assert [r[0] for r in rows] == [a.id, b.id]
    assert rows[0][1:10] == ("A", 65, 120, D("0.120000"), "answered", D("0.060000"), 60, 60,
                             True)
    assert abs(rows[0][10] - (now - 65)) < 0.001
    assert rows[1][1:] == ("B", 0, 0, D(0), "no answer", D(0), 0, 1, True, None, True)


@pytest_twisted.ensureDeferred
async def test_settling_twice_charges_once(ledger, sql):
    """A session settled again (an open CDR closed twice, or the same new CDR objects
    passed twice) charges nothing more and writes no second row."""
    uid = user(sql, "5.0000")
    leg = Cdr("A", "1", "2", userid=uid, starttime=time.time(), session="s", node="n")
    open_id = await ledger.open_cdr(leg)
    assert leg.id == open_id
    leg.cost, leg.duration = D("1.5000"), 30
    new = [Cdr("B", "2", "3", userid=uid, cost=D("0.5000"))]
    assert await ledger.settle(uid, "s", [leg, *new]) == D("2.0000")
    assert await ledger.settle(uid, "s", [leg, *new]) == D(0)
    assert await ledger.balance(uid) == D("3.0000")
    assert sql("SELECT count(*), bool_and(settled) FROM tb_cdrs") == [(2, True)]


@pytest_twisted.ensureDeferred
async def test_settle_stops_credit_at_zero_and_logs_the_shortfall(ledger, sql):
    """A cost above the credit takes what is left, never more, and warns with the
    shortfall; a call without payer (userid None) writes its CDR and charges nothing."""
    uid = user(sql, "0.3000")
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        charged = await ledger.settle(uid, "s", [Cdr("B", "1", "2", cost=D("0.5000"))])
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert charged == D("0.3000")
    assert await ledger.balance(uid) == D("0.0000")
    [warning] = [e for e in events if "shortfall" in e]
    assert warning["shortfall"] == D("0.2000") and warning["userid"] == uid
    assert await ledger.settle(None, "t", [Cdr("in", "1", "2", cost=D("0.1000"))]) == D(0)
    assert sql("SELECT count(*) FROM tb_cdrs") == [(2,)]


@pytest_twisted.ensureDeferred
async def test_unsettled_finds_open_legs_of_this_node_or_of_silent_nodes(ledger, sql):
    """unsettled returns open CDRs of the node, or of any node whose heartbeat is older
    than the limit, with the tariff they were rated at; a heartbeat or settling takes
    them out."""
    uid = user(sql, "5.0000")
    now = time.time()
    mine = Cdr("A", "1", "2", userid=uid, starttime=now - 10, answertime=now - 5,
               price=D("0.06"), initblock=30, increment=6, connectfee=D("0.01"),
               session="s1", node="n1")
    theirs = Cdr("B", "2", "3", userid=uid, starttime=now, answertime=now, session="s2",
                 node="n2")
    await ledger.open_cdr(mine)
    await ledger.open_cdr(theirs)
    [found] = await ledger.unsettled("n1", 60)
    # an open leg is billed up to its last heartbeat: that is its endtime here
    assert found.id == mine.id and found.endtime is not None
    assert found.endtime >= found.answertime
    assert (found.leg, found.userid, found.price, found.initblock, found.increment,
            found.connectfee, found.session, found.node) == (
        "A", uid, D("0.060000"), 30, 6, D("0.010000"), "s1", "n1")
    assert abs(found.answertime - (now - 5)) < 0.001
    sql("UPDATE tb_cdrs SET heartbeat = now() - interval '2 minutes'")
    assert [c.id for c in await ledger.unsettled("n3", 60)] == [mine.id, theirs.id]
    await ledger.heartbeat([theirs.id], [])
    assert [c.id for c in await ledger.unsettled("n3", 60)] == [mine.id]
    await ledger.settle(uid, "s1", [mine])
    assert await ledger.unsettled("n1", 60) == []


@pytest_twisted.ensureDeferred
async def test_release_stale_drops_reservations_of_this_node_or_silent_ones(ledger, sql):
    """release_stale deletes the node's reservations and those whose heartbeat is older
    than the limit, and counts them; a session heartbeat keeps one alive."""
    uid = user(sql, "5.0000")
    await ledger.reserve(uid, "s1", D("1"), D("1"), node="n1")
    await ledger.reserve(uid, "s2", D("1"), D("1"), node="n2")
    await ledger.reserve(uid, "s3", D("1"), D("1"), node="n2")
    assert await ledger.release_stale("n1", 60) == 1
    sql("UPDATE tb_reservations SET heartbeat = now() - interval '2 minutes'")
    await ledger.heartbeat([], ["s3"])
    assert await ledger.release_stale("n3", 60) == 1
    assert sql("SELECT session FROM tb_reservations") == [("s3",)]
    assert await ledger.available(uid) == D("4.0000")
