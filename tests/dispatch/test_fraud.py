"""The fraud guards ([fraud]) over the fake telephony and a real PostgreSQL: each refusal
stores nothing (or dials nothing) and says why."""

from decimal import Decimal

import pytest
import pytest_twisted

from mizu.config import FraudConfig, load_config
from mizu.dispatch.request import CallbackRequest
from mizu.errors import Blocked, ConfigError, LimitReached, StoreError, StoreUnavailable
from tests.dispatch.test_flows import alice, start_harness, stop_harness

OFF = FraudConfig(max_calls_per_user=0, callbacks_per_hour=0, anumber_per_hour=0,
                  daily_spend=0, blocked_prefixes=())


def http(anum="4917011", bnum="4420111", password="wonder"):
    return CallbackRequest(anum=anum, bnum=bnum, source="http", username="alice",
                           password=password)


@pytest_twisted.async_yield_fixture
async def guarded(database, sql, tmp_path, request):
    fraud = request.param if hasattr(request, "param") else FraudConfig()
    h = await start_harness(database, sql, tmp_path, fraud)
    yield h
    await stop_harness(h)


def with_fraud(**kwargs):
    fraud = FraudConfig(**{**OFF.__dict__, **kwargs})
    return pytest.mark.parametrize("guarded", [fraud], indirect=True)


async def write(h, statement):
    """A change while the dispatcher runs: through mizu's pool, so that the reactor turns
    (a blocking ``h.sql`` waiting on a row lock of a claim in flight would wait for ever)."""
    await h.root.store.runOperation(statement)


async def refused(d, error):
    try:
        await d
    except error as e:
        return str(e)
    raise AssertionError(f"accepted, not refused with {error.__name__}")


@pytest_twisted.ensureDeferred
async def test_defaults_block_premium_and_satellite_destinations_as_a_and_as_b(guarded):
    """Out of the box 882 (international networks) and 979 (premium) are never called."""
    h = guarded
    why = await refused(h.dispatcher.submit(http(bnum="+88213900000")), Blocked)
    assert "882 is a blocked" in why and "B-number" in why
    why = await refused(h.dispatcher.submit(http(anum="0097912345")), Blocked)
    assert "979 is a blocked" in why and "A-number" in why
    assert h.sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_a_blocked_b_keyed_in_the_ivr_is_never_dialled(guarded):
    """The IVR asks for B; 8821... is refused before any B leg: the row says why."""
    h = guarded
    cbid = await h.alices_callback(bnum="")
    a = await h.leg(1)
    a.far_answers()
    await h.until(lambda: h.status(cbid)[0] == "ivr")
    await h.advance(5)
    a.far_presses("88213900000#")
    await h.until(lambda: h.status(cbid)[0] == "failed")
    assert "882 is a blocked" in h.status(cbid)[1]
    assert len(h.fake.originated) == 1  # only A
    assert h.sql("SELECT count(*) FROM tb_reservations")[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_a_row_for_a_blocked_a_number_is_not_dialled(guarded):
    """A row inserted by SQL for a blocked A-number fails without a leg."""
    h = guarded
    h.sql("INSERT INTO tb_callbacks (userid, anum, bnum, source, status) "
          "VALUES (%s, '+8816000000', '4420111', 'db', 'pending') RETURNING id", (alice(h),))
    cbid = h.sql("SELECT id FROM tb_callbacks")[0][0]
    await h.until(lambda: h.status(cbid)[0] == "failed")
    assert "881 is a blocked" in h.status(cbid)[1]
    assert h.fake.originated == []


@pytest_twisted.ensureDeferred
async def test_blocklist_file_is_read_on_reload_and_a_bad_one_is_refused(guarded, tmp_path):
    h = guarded
    listing = tmp_path / "blocklist.txt"
    listing.write_text("# operator's list\n+44 20 7946  # a London range\n")
    ini = tmp_path / "mizu.ini"
    ini.write_text(f"[fraud]\nblocklist = {listing}\n")
    h.root._load_config = lambda: load_config(str(ini), dsn=h.root.config.database.dsn)
    await h.root.reload()
    why = await refused(h.dispatcher.submit(http(bnum="442079460000")), Blocked)
    assert "44207946 is a blocked" in why
    await h.dispatcher.submit(http(bnum="4420111"))  # not under the prefix
    listing.write_text("4420794\nnot-a-prefix\n")
    with pytest.raises(ConfigError, match="line 2: not a number prefix"):
        await h.root.reload()
    await refused(h.dispatcher.submit(http(bnum="442079460000")), Blocked)  # still in force


@with_fraud(callbacks_per_hour=2)
@pytest_twisted.ensureDeferred
async def test_a_user_may_request_callbacks_per_hour(guarded):
    h = guarded
    await h.dispatcher.submit(http(anum="4917001"))
    await h.dispatcher.submit(http(anum="4917002"))
    why = await refused(h.dispatcher.submit(http(anum="4917003")), LimitReached)
    assert why == "too many callback requests: 2 in the last hour (at most 2)"
    # The operator's console is not counted.
    await h.dispatcher.submit(CallbackRequest(anum="4917004", username="alice", trusted=True))
    await write(h, "UPDATE tb_callbacks SET created = now() - interval '61 minutes'")
    await h.dispatcher.submit(http(anum="4917005"))
    assert h.sql("SELECT count(*) FROM tb_callbacks")[0][0] == 4


@with_fraud(anumber_per_hour=2)
@pytest_twisted.ensureDeferred
async def test_an_a_number_is_called_back_so_often_whoever_asks_however_spelled(guarded):
    h = guarded
    h.sql("INSERT INTO tb_user (username, password, credit) VALUES ('bob', 'builder', 5)")
    await h.dispatcher.submit(http(anum="+4917011"))
    await h.dispatcher.submit(CallbackRequest(anum="004917011", bnum="4420111", source="http",
                                              username="bob", password="builder"))
    why = await refused(h.dispatcher.submit(http(anum="4917011")), LimitReached)
    assert "for 4917011: 2 in the last hour (at most 2)" in why
    await h.dispatcher.submit(http(anum="4917012"))


@with_fraud(max_calls_per_user=1)
@pytest_twisted.ensureDeferred
async def test_a_user_has_so_many_calls_at_once(guarded):
    """The second callback while the first is bridged is not dialled; after it, it is."""
    h = guarded
    cbid, a, b = await h.bridged()
    second = await h.alices_callback(bnum="4420222")
    await h.until(lambda: h.status(second)[0] == "failed")
    assert h.status(second)[1] == "1 calls in progress already (at most 1 at once)"
    assert len(h.fake.originated) == 2
    b.far_hangs_up()
    await h.until(lambda: h.status(cbid)[0] == "completed")
    third = await h.alices_callback(bnum="4420333")
    leg = await h.leg(3)
    assert leg.uri.startswith("sip:4917011@")
    assert h.status(third)[0] == "calling_a"


@with_fraud(daily_spend=0.5)
@pytest_twisted.ensureDeferred
async def test_the_daily_spend_cap_cuts_the_call_and_refuses_the_next(guarded):
    """Credit 10, cap 0.50: the bridged call is cut when the day's charges reach 0.50."""
    h = guarded
    cbid, a, b = await h.bridged()
    await h.advance(600, step=1)
    await h.until(lambda: h.status(cbid)[0] == "completed")
    assert b.state == "ended"
    status, reason = h.status(cbid)
    assert reason.startswith("cut: the daily spend limit of 0.5")
    spent = Decimal(10) - h.credit()
    assert Decimal("0.3") < spent <= Decimal("0.5")
    assert spent == sum(r[4] for r in h.cdrs(cbid))
    # The harness's clock is in 1970: date the CDRs today, as a real call's would be.
    await write(h, "UPDATE tb_cdrs SET starttime = now(), answertime = now(), endtime = now()")
    # What is left of the cap cannot pay for A's first minute: the next is not dialled.
    legs = len(h.fake.originated)
    nxt = await h.dispatcher.submit(http(bnum="4420999"))
    await h.until(lambda: h.status(nxt)[0] == "failed", limit=5)
    assert h.status(nxt)[1].startswith("the daily spend limit of 0.5000 is reached")
    assert len(h.fake.originated) == legs
    # Once the day's charges reach the cap, requests are refused when they are made.
    await write(h, "UPDATE tb_cdrs SET cost = 0.5 WHERE id = (SELECT min(id) FROM tb_cdrs)")
    why = await refused(h.dispatcher.submit(http(bnum="4420999")), LimitReached)
    assert why == "the daily spend limit of 0.50 is reached"


@with_fraud()
@pytest_twisted.ensureDeferred
async def test_settling_waits_for_the_database_and_is_never_dropped(guarded):
    """The store fails the settlement twice (as during an outage): it is tried again until
    it is stored, and the CDRs and the charge are there after."""
    h = guarded
    ledger = h.root.store.ledger
    real, failures = ledger.settle, []

    def flaky(*args, **kwargs):
        if len(failures) < 2:
            failures.append(args[1])
            raise StoreUnavailable("no live database connection")
        return real(*args, **kwargs)

    cbid, a, b = await h.bridged()
    ledger.settle = flaky
    await h.advance(30, step=1)
    b.far_hangs_up()
    await h.until(lambda: len(failures) == 2)
    assert h.status(cbid)[0] == "bridged"  # nothing stored yet
    await h.until(lambda: h.status(cbid)[0] == "completed", limit=10)
    rows = h.cdrs(cbid)
    assert [r[0] for r in rows] == ["A", "B"] and 30 <= rows[1][3] <= 36  # 30 s + 6 s steps
    assert h.credit() == Decimal(10) - rows[0][4] - rows[1][4]
    assert h.sql("SELECT count(*) FROM tb_reservations")[0][0] == 0


@with_fraud(callbacks_per_hour=1, max_calls_per_user=1)
@pytest_twisted.ensureDeferred
async def test_a_users_own_limits_override_the_fraud_section(guarded):
    """tb_user callbacksperhour = 0 lifts the hourly limit for alice, maxcalls = 2 lets her
    have two calls at once; NULL (bob) follows [fraud]."""
    h = guarded
    h.sql("UPDATE tb_user SET callbacksperhour = 0, maxcalls = 2 WHERE username = 'alice'")
    h.sql("INSERT INTO tb_user (username, password, credit) VALUES ('bob', 'builder', 5)")
    first, a1, b1 = await h.bridged()
    second = await h.alices_callback(bnum="4420222")
    a2 = await h.leg(3)
    a2.far_answers()
    await h.advance(5)
    b2 = await h.leg(4)
    b2.far_answers()
    await h.until(lambda: h.status(second)[0] == "bridged")
    third = await h.alices_callback(bnum="4420333")  # not refused: her hourly limit is off
    await h.until(lambda: h.status(third)[0] == "failed")
    assert h.status(third)[1] == "2 calls in progress already (at most 2 at once)"
    bob = CallbackRequest(anum="4917099", bnum="4420111", source="http", username="bob",
                          password="builder")
    await h.dispatcher.submit(bob)
    why = await refused(h.dispatcher.submit(bob), LimitReached)
    assert why == "too many callback requests: 1 in the last hour (at most 1)"


@with_fraud(blocked_prefixes=("+4420794", "0049301"))
@pytest_twisted.ensureDeferred
async def test_blocked_prefixes_may_be_written_as_numbers_are(guarded):
    """A prefix written with + or 00 blocks the numbers it names, however they are spelled."""
    h = guarded
    assert "4420794 is a blocked" in await refused(
        h.dispatcher.submit(http(bnum="442079460000")), Blocked)
    assert "49301 is a blocked" in await refused(
        h.dispatcher.submit(http(anum="+4930123")), Blocked)
    await h.dispatcher.submit(http(bnum="4420111"))


@with_fraud()
@pytest_twisted.ensureDeferred
async def test_a_settlement_the_database_refuses_is_not_tried_for_ever(guarded):
    """A statement refused as such (not an outage) is left to recovery at once: the session
    ends instead of trying again every 30 s for ever."""
    h = guarded
    calls = []

    def refusing(*args, **kwargs):
        calls.append(args[1])
        raise StoreError("database error 23514: new row violates check constraint")

    cbid, a, b = await h.bridged()
    h.root.store.ledger.settle = refusing
    b.far_hangs_up()
    await h.until(lambda: not h.dispatcher.sessions, limit=20)
    await h.advance(60, step=1)
    assert calls == [f"cb{cbid}"]
