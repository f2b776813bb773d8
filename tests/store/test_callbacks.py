"""The callback queue against a real PostgreSQL: insert, claim, statuses, recovery scans."""

import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from mizu.errors import StoreError
from mizu.store.callbacks import CallbackRow, Callbacks
from mizu.store.migrations import LATEST, MIGRATIONS, migrate
from mizu.store.pool import Pool


async def started_pool(database, size=4):
    pool = await Pool(database, reactor, size=size).start()
    await migrate(pool)
    return pool


@pytest_twisted.async_yield_fixture
async def callbacks(database):
    """A Callbacks on a migrated database."""
    pool = await started_pool(database)
    yield Callbacks(pool)
    pool.close()


def user(sql, name="alice"):
    sql("INSERT INTO tb_user (username, credit) VALUES (%s, 5)", (name,))
    return sql("SELECT id FROM tb_user WHERE username = %s", (name,))[0][0]


@pytest_twisted.ensureDeferred
async def test_insert_gives_the_claimed_idempotency_key_its_id_in_the_same_statement(
        callbacks, sql):
    """With ``idempotency``, the row and the key's callback id commit together: a lost
    answer cannot leave the key free for a retry to store the request again."""
    uid = user(sql)
    sql("INSERT INTO tb_idempotency (userid, key, request) VALUES (%s, 'k1', 'r')", (uid,))
    id = await callbacks.insert(userid=uid, anum="4917011", source="http",
                                idempotency=(uid, "k1"))
    assert sql("SELECT callbackid FROM tb_idempotency WHERE key = 'k1'") == [(id,)]
    with pytest.raises(StoreError):  # a failing insert leaves the key as it was
        await callbacks.insert(userid=uid + 99, anum="4917011", source="http",
                               idempotency=(uid, "k1"))
    assert sql("SELECT callbackid FROM tb_idempotency WHERE key = 'k1'") == [(id,)]
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 1


@pytest_twisted.ensureDeferred
async def test_insert_stores_a_pending_row(callbacks, sql):
    """insert queues a pending row with every field given; get reads it back."""
    uid = user(sql)
    id = await callbacks.insert(userid=uid, anum="4917011", bnum="4930222", source="http",
                                accessnumber="4930555", ivrid=3, authenticated=True,
                                callerid="4930555")
    row = await callbacks.get(id)
    assert isinstance(row, CallbackRow)
    assert (row.id, row.userid, row.anum, row.bnum, row.source, row.status, row.reason,
            row.accessnumber, row.ivrid, row.attempts, row.authenticated, row.callerid) == (
        id, uid, "4917011", "4930222", "http", "pending", "", "4930555", 3, 0, True,
        "4930555")
    assert abs(row.created - time.time()) < 5 and abs(row.updated - time.time()) < 5
    assert await callbacks.get(id + 1000) is None


@pytest_twisted.ensureDeferred
async def test_claim_takes_due_rows_oldest_first_and_marks_them(callbacks, sql):
    """claim returns due pending rows by due time, already calling_a with an attempt
    counted and the claiming node recorded; rows not yet due and claimed rows stay out."""
    first = await callbacks.insert(userid=None, anum="1", source="console")
    later = await callbacks.insert(userid=None, anum="2", source="console", delay=60)
    oldest = await callbacks.insert(userid=None, anum="3", source="console")
    sql("UPDATE tb_callbacks SET due = now() - interval '1 minute' WHERE id = %s", (oldest,))
    claimed = await callbacks.claim("node-a", 10)
    assert [r.id for r in claimed] == [oldest, first]
    assert all(r.status == "calling_a" and r.attempts == 1 for r in claimed)
    assert sql("SELECT id, node, heartbeat IS NOT NULL FROM tb_callbacks"
               " WHERE status = 'calling_a' ORDER BY id") == [
        (first, "node-a", True), (oldest, "node-a", True)]
    assert await callbacks.claim("node-b", 10) == []
    assert (await callbacks.get(later)).status == "pending"


@pytest_twisted.ensureDeferred
async def test_claim_respects_the_limit(callbacks):
    """No more than ``limit`` rows are claimed at a time; the rest wait for the next claim."""
    ids = [await callbacks.insert(userid=None, anum=str(n), source="web") for n in range(5)]
    assert [r.id for r in await callbacks.claim("n", 2)] == ids[:2]
    assert [r.id for r in await callbacks.claim("n", 2)] == ids[2:4]
    assert [r.id for r in await callbacks.claim("n", 2)] == ids[4:]


@pytest_twisted.ensureDeferred
async def test_next_due_counts_down_to_the_earliest_pending_row(callbacks, sql):
    """next_due is None with nothing pending, the seconds until the earliest due row,
    and <= 0 once a row is overdue; claimed rows no longer count."""
    assert await callbacks.next_due() is None
    await callbacks.insert(userid=None, anum="1", source="web", delay=30)
    await callbacks.insert(userid=None, anum="2", source="web", delay=90)
    assert 25 < await callbacks.next_due() <= 30
    id = await callbacks.insert(userid=None, anum="3", source="web")
    sql("UPDATE tb_callbacks SET due = now() - interval '5 seconds' WHERE id = %s", (id,))
    assert await callbacks.next_due() <= -4
    await callbacks.claim("n", 1)
    assert 25 < await callbacks.next_due() <= 30


@pytest_twisted.ensureDeferred
async def test_set_status_moves_unfinished_rows_only(callbacks):
    """set_status changes status, reason and (if given) node until the row is completed
    or failed; after that it changes nothing and says so."""
    id = await callbacks.insert(userid=None, anum="1", source="sms")
    [row] = await callbacks.claim("n1", 1)
    assert await callbacks.set_status(id, "ivr") is True
    assert await callbacks.set_status(id, "calling_b", node="n2") is True
    row = await callbacks.get(id)
    assert (row.status, row.reason) == ("calling_b", "")
    assert await callbacks.set_status(id, "failed", "busy") is True
    assert await callbacks.set_status(id, "completed") is False
    assert await callbacks.set_status(id + 99, "ivr") is False
    row = await callbacks.get(id)
    assert (row.status, row.reason) == ("failed", "busy")


@pytest_twisted.ensureDeferred
async def test_requeue_puts_a_row_back_for_later(callbacks):
    """requeue returns a claimed row to pending, due after the delay with its reason;
    it is claimed again (a second attempt) once due, and finished rows stay finished."""
    id = await callbacks.insert(userid=None, anum="1", source="ani")
    await callbacks.claim("n", 5)
    assert await callbacks.requeue(id, 60, "no SIP capacity") is True
    row = await callbacks.get(id)
    assert (row.status, row.reason) == ("pending", "no SIP capacity")
    assert await callbacks.claim("n", 5) == []
    assert 55 < await callbacks.next_due() <= 60
    await callbacks.requeue(id, 0, "no SIP capacity")
    [row] = await callbacks.claim("n", 5)
    assert (row.id, row.attempts) == (id, 2)
    await callbacks.set_status(id, "completed")
    assert await callbacks.requeue(id, 0, "again") is False
    assert (await callbacks.get(id)).status == "completed"


@pytest_twisted.ensureDeferred
async def test_recent_lists_newest_first(callbacks):
    """recent gives the newest rows first, all or pending only, at most ``limit``."""
    ids = [await callbacks.insert(userid=None, anum=str(n), source="web") for n in range(4)]
    await callbacks.claim("n", 1)  # takes ids[0]
    assert [r.id for r in await callbacks.recent(False)] == ids[::-1]
    assert [r.id for r in await callbacks.recent(True)] == ids[:0:-1]
    assert [r.id for r in await callbacks.recent(False, limit=2)] == ids[:1:-1]


@pytest_twisted.ensureDeferred
async def test_stale_finds_rows_of_this_node_or_of_silent_nodes(callbacks, sql):
    """stale returns in-flight rows of the given node, and those of other nodes whose
    heartbeat is older than the limit; a heartbeat makes them fresh again and rows that
    are pending or finished are never stale."""
    a = await callbacks.insert(userid=None, anum="1", source="web")
    await callbacks.claim("n1", 1)
    b = await callbacks.insert(userid=None, anum="2", source="web")
    await callbacks.claim("n2", 1)
    done = await callbacks.insert(userid=None, anum="3", source="web")
    await callbacks.claim("n1", 1)
    await callbacks.set_status(done, "completed")
    await callbacks.insert(userid=None, anum="4", source="web")
    assert [r.id for r in await callbacks.stale("n1", 60)] == [a]
    sql("UPDATE tb_callbacks SET heartbeat = now() - interval '2 minutes',"
        " updated = now() - interval '2 minutes'")
    assert [r.id for r in await callbacks.stale("n3", 60)] == [a, b]
    await callbacks.heartbeat([b])
    assert [r.id for r in await callbacks.stale("n3", 60)] == [a]
    sql("UPDATE tb_callbacks SET heartbeat = NULL, updated = now() WHERE id = %s", (a,))
    assert await callbacks.stale("n3", 60) == []
    await callbacks.heartbeat([])


@pytest_twisted.ensureDeferred
async def test_two_claimers_never_take_the_same_row(database, sql):
    """Claims racing from two pools (two nodes) share out 50 rows: every row is taken
    exactly once."""
    pools = [await started_pool(database), await started_pool(database)]
    try:
        queues = [Callbacks(p) for p in pools]
        for n in range(50):
            await queues[0].insert(userid=None, anum=str(n), source="db")
        taken = []
        while True:
            batches = await defer.gatherResults(
                [q.claim(f"node{i}", 4) for i, q in enumerate(queues) for _ in range(8)],
                consumeErrors=True)
            if not any(batches):
                break
            taken.extend(r.id for batch in batches for r in batch)
        assert len(taken) == 50 and len(set(taken)) == 50
        assert sql("SELECT count(*), sum(attempts) FROM tb_callbacks"
                   " WHERE status = 'calling_a'") == [(50, 50)]
    finally:
        for p in pools:
            p.close()


@pytest_twisted.ensureDeferred
async def test_a_row_inserted_by_plain_sql_is_claimable_and_authenticated(callbacks, sql):
    """An operator's INSERT naming only SPEC §3 columns is claimed; with a userid and
    source 'db' it counts as authenticated, without one it does not, and mizu's own
    inserts keep what they say."""
    uid = user(sql)
    sql("INSERT INTO tb_callbacks (userid, anum, source, status)"
        " VALUES (%s, '4917011', 'db', 'pending')", (uid,))
    sql("INSERT INTO tb_callbacks (anum, source, status) VALUES ('4917022', 'db', 'pending')")
    ours = await callbacks.insert(userid=uid, anum="4917033", source="http")
    rows = await callbacks.claim("n", 10)
    assert [(r.anum, r.userid, r.authenticated) for r in rows] == [
        ("4917011", uid, True), ("4917022", None, False), ("4917033", uid, False)]
    assert rows[2].id == ours
    assert all(r.status == "calling_a" for r in rows)


@pytest_twisted.ensureDeferred
async def test_upgrading_a_v1_database_keeps_its_rows_usable(database, sql):
    """Rows written under schema 1 survive version 2: a pending callback is claimable
    (not authenticated, as nothing said so) and old CDRs count as settled."""
    pool = await Pool(database, reactor, size=2).start()
    try:
        assert await migrate(pool, MIGRATIONS[:1]) == 1
        sql("INSERT INTO tb_callbacks (anum, bnum, source) VALUES ('1', '2', 'web')")
        sql("INSERT INTO tb_cdrs (leg, caller, callee, cost) VALUES ('A', '1', '2', 0.5)")
        assert await migrate(pool) == LATEST
        [row] = await Callbacks(pool).claim("n", 5)
        assert (row.anum, row.attempts, row.authenticated, row.ivrid, row.callerid) == (
            "1", 1, False, 0, "")
        assert sql("SELECT settled, node, session, increment FROM tb_cdrs") == [
            (True, "", "", 1)]
    finally:
        pool.close()


@pytest_twisted.inlineCallbacks
def test_a_phone_trigger_has_one_live_request_per_a_number(callbacks, sql):
    """Dialling the access number again while a callback is live gives the same id."""
    first = yield callbacks.insert(userid=None, anum="4917011", source="ani")
    again = yield callbacks.insert(userid=None, anum="4917011", source="sms")
    other = yield callbacks.insert(userid=None, anum="4917022", source="ani")
    console = yield callbacks.insert(userid=None, anum="4917011", source="console")
    assert again == first and len({first, other, console}) == 3
    yield callbacks.set_status(first, "failed", "A busy")
    later = yield callbacks.insert(userid=None, anum="4917011", source="ani")
    assert later not in (first, other, console)
    assert sql("SELECT count(*) FROM tb_callbacks WHERE anum = '4917011'")[0][0] == 3


@pytest_twisted.ensureDeferred
async def test_concurrent_inserts_are_coalesced_each_with_its_own_id(database, sql):
    """200 inserts at once go in a few statements; each request gets the id of its own
    row; a bad row in a batch fails alone."""
    pool = await started_pool(database)
    try:
        queue = Callbacks(pool)
        uid = user(sql)
        statements = []
        run = pool.runQuery
        pool.runQuery = lambda q, p=None: (statements.append(q), run(q, p))[1]
        numbers = [f"49170{i:04d}" for i in range(200)]
        ids = await defer.gatherResults([
            defer.ensureDeferred(queue.insert(userid=uid, anum=n, source="http",
                                              delay=i % 3))
            for i, n in enumerate(numbers)])
        assert len(statements) <= 4
        stored = dict(sql("SELECT id, anum FROM tb_callbacks"))
        assert [stored[i] for i in ids] == numbers
        results = await defer.DeferredList([
            defer.ensureDeferred(queue.insert(userid=u, anum="4930111", source="http"))
            for u in (uid, 999_999, uid)], consumeErrors=True)
        assert [ok for ok, _ in results] == [True, False, True]  # no user 999999
        assert sql("SELECT count(*) FROM tb_callbacks WHERE anum = '4930111'")[0][0] == 2
    finally:
        pool.close()


@pytest_twisted.ensureDeferred
async def test_same_within_finds_a_recent_copy_whatever_its_status(callbacks, sql):
    """A trigger request with same_within answers a recent identical row, even ended; an
    older one, or another B-number, is a new request."""
    uid = user(sql)
    first = await callbacks.insert(userid=uid, anum="4917011", bnum="4420111", source="sms",
                                   same_within=120)
    sql("UPDATE tb_callbacks SET status = 'completed' WHERE id = %s", (first,))
    assert await callbacks.insert(userid=uid, anum="4917011", bnum="4420111", source="sms",
                                  same_within=120) == first
    other = await callbacks.insert(userid=uid, anum="4917011", bnum="4420222", source="sms",
                                   same_within=120)
    assert other != first
    sql("UPDATE tb_callbacks SET status = 'completed', created = now() - interval '5 min'")
    again = await callbacks.insert(userid=uid, anum="4917011", bnum="4420111", source="sms",
                                   same_within=120)
    assert again not in (first, other)
    assert sql("SELECT count(*) FROM tb_callbacks")[0][0] == 3
