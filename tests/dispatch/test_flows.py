"""The callback and calling-card flows over the fake telephony and a real PostgreSQL.

The dispatcher, the IVR and billing run for real; legs are fake (the test plays the far
ends) and call time runs on a ``Clock``, so a call of 95 s takes no real time.
"""

from decimal import Decimal

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from mizu.config import CallbackConfig, Config, DatabaseConfig, IvrConfig, SipConfig
from mizu.dispatch.dispatcher import Dispatcher
from mizu.dispatch.inbound import Inbound
from mizu.dispatch.request import CallbackRequest
from mizu.errors import AuthenticationFailed, BadRequest, ConfigError
from mizu.service import MizuService
from mizu.sip.fake import FakeLeg, FakeTelephony
from mizu.store.service import StoreService
from mizu.telephony import Caller
from tests.store.support import sleep

GATEWAY = "sip:{number}@127.0.0.1:5999"


class Harness:
    """A root with the real store and dispatcher, fake legs and a clock for call time."""

    def __init__(self, root, dispatcher, fake, clock, sql):
        self.root, self.dispatcher, self.fake, self.clock, self.sql = (
            root, dispatcher, fake, clock, sql)

    async def leg(self, n):
        """The n-th originated leg (from 1), once dialled (call time runs meanwhile)."""
        await self.until(lambda: len(self.fake.originated) >= n)
        return self.fake.originated[n - 1]

    async def advance(self, seconds, step=0.1):
        """Let call time pass in small steps, giving the database its turn between them."""
        for _ in range(int(round(seconds / step))):
            self.clock.advance(step)
            await sleep(0.002)

    async def until(self, predicate, limit=120.0, step=0.1):
        """Run call time until ``predicate()``; at most ``limit`` seconds of it."""
        passed = 0.0
        while not predicate():
            assert passed < limit, "timed out"
            await self.advance(step, step)
            passed += step

    def alices_callback(self, bnum="4420111"):
        """A console callback for alice from 4917011 (to ``bnum``, if given)."""
        return self.dispatcher.submit(CallbackRequest(anum="4917011", bnum=bnum,
                                                      username="alice", trusted=True))

    async def bridged(self):
        """alice's callback with A and B answered: (callback id, A leg, B leg)."""
        cbid = await self.alices_callback()
        a = await self.leg(1)
        a.far_answers()
        b = await self.leg(2)
        b.far_answers()
        await self.until(lambda: self.status(cbid)[0] == "bridged")
        return cbid, a, b

    def status(self, cbid):
        return self.sql("SELECT status, reason FROM tb_callbacks WHERE id = %s", (cbid,))[0]

    def credit(self, name="alice"):
        return self.sql("SELECT credit FROM tb_user WHERE username = %s", (name,))[0][0]

    def cdrs(self, cbid=None):
        where, args = ("WHERE callbackid = %s", (cbid,)) if cbid else ("", ())
        return self.sql("SELECT leg, callee, result, billedduration, cost, userid FROM tb_cdrs "
                        f"{where} ORDER BY id", args)


async def start_harness(database, sql, tmp_path, fraud=None):
    """The started harness; ``fraud`` (a ``FraudConfig``) replaces the default guards."""
    config = Config(
        database=DatabaseConfig(dsn=database),
        sip=SipConfig(default_gateway=GATEWAY),
        ivr=IvrConfig(sounds=str(tmp_path / "sounds"), scripts=str(tmp_path / "ivr")),
        callback=CallbackConfig(ring_timeout=30),
        **({"fraud": fraud} if fraud is not None else {}))
    (tmp_path / "ivr").mkdir(exist_ok=True)
    clock = Clock()
    clock.advance(1_000_000)
    fake = FakeTelephony(capacity=8, clock=clock)
    root = MizuService(config, lambda: root.config, reactor)
    StoreService(config.database, reactor).setServiceParent(root)
    dispatcher = Dispatcher(root, fake, clock)
    dispatcher.setServiceParent(root)
    root.startService()
    await root.whenReady()
    sql("INSERT INTO tb_config (name, value) VALUES ('callbackdelay', '0')")
    await root.reload()
    sql("INSERT INTO tb_user (username, password, pincode, credit, callerid) "
        "VALUES ('alice', 'wonder', '1234', 10, '')")
    sql("INSERT INTO tb_user (username, iscallback) VALUES ('4930555', 6)")
    sql("INSERT INTO tb_user (username, ivrid) VALUES ('4930777', 0)")
    sql("INSERT INTO tb_rates (prefix, price, initblock, increment, connectfee) VALUES "
        "('49', 0.06, 60, 60, 0), ('44', 0.12, 30, 6, 0.05)")
    await root.reload()
    return Harness(root, dispatcher, fake, clock, sql)


async def stop_harness(h):
    await h.advance(1)  # legs still being placed (paced on the clock) are placed
    for leg in list(h.fake.legs.values()):  # as the SIP bridge does when it stops
        leg.far_hangs_up(503, "shutdown")
    await h.root.stopService()


@pytest_twisted.async_yield_fixture
async def harness(database, sql, tmp_path):
    h = await start_harness(database, sql, tmp_path)
    yield h
    await stop_harness(h)


def alice(h):
    return h.sql("SELECT id FROM tb_user WHERE username = 'alice'")[0][0]


@pytest_twisted.ensureDeferred
async def test_callback_with_known_b_bridges_bills_both_legs_and_completes(harness):
    """A answers, hears the minutes, B answers, 95 s of talk: two CDRs, credit less their cost."""
    h = harness
    cbid = await h.alices_callback()
    a = await h.leg(1)
    assert a.uri == "sip:4917011@127.0.0.1:5999"
    a.far_answers()
    await h.until(lambda: h.status(cbid)[0] == "ivr")
    await h.advance(5)  # "you have N minutes", "connecting"
    b = await h.leg(2)
    assert b.uri == "sip:4420111@127.0.0.1:5999" and b.caller == "4917011"
    b.far_answers()
    await h.until(lambda: h.status(cbid)[0] == "bridged")
    answered_b = h.clock.seconds()
    await h.advance(95, step=1)
    b.far_hangs_up()
    await h.advance(3)
    await h.until(lambda: h.status(cbid)[0] == "completed")
    assert a.state == "ended"
    rows = h.cdrs(cbid)
    assert [r[0] for r in rows] == ["A", "B"], h.sql("SELECT * FROM tb_cdrs")
    a_cdr, b_cdr = rows
    assert b_cdr[3] == 96 and b_cdr[4] == Decimal("0.05") + Decimal("0.12") * 96 / 60
    assert a_cdr[4] > 0 and a_cdr[3] % 60 == 0
    assert h.credit() == Decimal(10) - a_cdr[4] - b_cdr[4]
    assert answered_b > 0


@pytest_twisted.ensureDeferred
async def test_callback_asks_destination_when_b_unknown(harness):
    """With no B the IVR collects it: digits then # dial B."""
    h = harness
    cbid = await h.alices_callback(bnum="")
    a = await h.leg(1)
    a.far_answers()
    await h.until(lambda: h.status(cbid)[0] == "ivr")
    await h.advance(5)
    a.far_presses("4420111#")
    await h.advance(5)
    b = await h.leg(2)
    assert b.uri.startswith("sip:4420111@")
    b.far_is_busy()
    await h.advance(5)
    await h.until(lambda: h.status(cbid)[0] == "failed")
    assert h.status(cbid)[1] == "B busy"
    rows = h.cdrs(cbid)
    assert [(r[0], r[2], r[4]) for r in rows][1] == ("B", "busy", Decimal(0))
    assert h.credit() == Decimal(10) - rows[0][4]


@pytest_twisted.ensureDeferred
async def test_unauthenticated_callback_asks_pin_and_three_wrong_pins_end_it(harness):
    """A console callback for an unknown A-number: the IVR asks the PIN; 3 wrong ends it."""
    h = harness
    cbid = await h.dispatcher.submit(CallbackRequest(anum="4917099", bnum="4420111",
                                                     trusted=True))
    a = await h.leg(1)
    a.far_answers()
    await h.until(lambda: h.status(cbid)[0] == "ivr")
    for _ in range(3):
        await h.advance(4)
        a.far_presses("9999#")
        await h.advance(1)
    await h.advance(5)
    await h.until(lambda: h.status(cbid)[0] == "failed")
    assert h.status(cbid)[1] == "PIN not accepted"
    assert len(h.fake.originated) == 1
    assert h.credit() == Decimal(10)


@pytest_twisted.ensureDeferred
async def test_a_not_answering_is_retried_then_fails_with_cdrs_and_no_charge(harness):
    """A rings out: dialled again after retry_delay; on the last attempt the row fails
    'A did not answer'. Each attempt leaves an A CDR costing 0."""
    h = harness
    cbid = await h.alices_callback()
    await h.leg(1)
    await h.until(lambda: h.status(cbid)[0] == "pending")
    assert h.status(cbid)[1] == "A did not answer; attempt 2 of 3 in 30 s"
    h.sql("UPDATE tb_callbacks SET due = now(), attempts = 3 WHERE id = %s", (cbid,))
    await h.leg(2)
    await h.until(lambda: h.status(cbid)[0] == "failed")
    assert h.status(cbid)[1] == "A did not answer"
    assert [(r[0], r[2], r[4]) for r in h.cdrs(cbid)] == [("A", "no_answer", Decimal(0))] * 2
    assert h.credit() == Decimal(10)


@pytest_twisted.ensureDeferred
async def test_call_is_cut_when_credit_runs_out(harness):
    """Credit 1.00 at 0.12/min for B (+A at 0.06/min): cut, credit never below 0."""
    h = harness
    h.sql("UPDATE tb_user SET credit = 1 WHERE username = 'alice'")
    cbid = await h.alices_callback()
    a = await h.leg(1)
    a.far_answers()
    await h.until(lambda: h.status(cbid)[0] == "ivr")
    await h.advance(5)
    b = await h.leg(2)
    b.far_answers()
    await h.until(lambda: h.status(cbid)[0] == "bridged")
    await h.advance(600, step=1)
    await h.until(lambda: h.status(cbid)[0] == "completed")
    assert b.state == "ended" and a.state == "ended"
    rows = h.cdrs(cbid)
    assert rows[1][2] == "cut"
    left = h.credit()
    assert Decimal(0) <= left < Decimal("0.2")
    assert left == Decimal(1) - rows[0][4] - rows[1][4]


@pytest_twisted.ensureDeferred
async def test_submit_rejects_bad_numbers_and_credentials_and_stores_nothing(harness):
    """A malformed number or a wrong password is refused before anything is stored."""
    h = harness
    for request, error in [
        (CallbackRequest(anum="12ab", username="alice", password="wonder"), BadRequest),
        (CallbackRequest(anum="4917011", username="alice", password="guess"),
         AuthenticationFailed),
        (CallbackRequest(anum="4917011", username="alice", password=""),
         AuthenticationFailed),
        (CallbackRequest(anum="4917011", source="http"), AuthenticationFailed),
    ]:
        try:
            await h.dispatcher.submit(request)
        except error:
            pass
        else:
            raise AssertionError(f"{request} was accepted")
    assert h.sql("SELECT count(*) FROM tb_callbacks")[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_row_inserted_by_sql_is_dialled(harness):
    """The 'db check' trigger: a pending row inserted by SQL is dialled."""
    h = harness
    h.sql("INSERT INTO tb_callbacks (userid, anum, bnum, source, status) "
          "VALUES (%s, '4917011', '4420111', 'db', 'pending')", (alice(h),))
    a = await h.leg(1)
    assert a.uri.startswith("sip:4917011@")


@pytest_twisted.ensureDeferred
async def test_ani_trigger_is_refused_then_called_back(harness):
    """An access number with iscallback 6: the trigger gets 480 (never 200), A is called."""
    h = harness
    h.sql("INSERT INTO tb_anumbers (anumber, userid) VALUES ('4917011', %s)", (alice(h),))
    inbound = Inbound(h.dispatcher)
    access = await h.root.store.users.access_number("4930555")
    user = await h.root.store.users.by_username("alice")
    leg = FakeLeg(h.fake, "t1", "in")
    h.fake.legs[leg.id] = leg
    inbound.inboundCall(leg, None, access, Caller("4917011", "ip", user=user))
    await h.until(lambda: leg.state == "ended")
    assert leg.final_code == 480
    a = await h.leg(1)
    assert a.uri.startswith("sip:4917011@") and a.caller == "4930555"
    rows = h.sql("SELECT leg, result FROM tb_cdrs WHERE leg = 'in'")
    assert rows == [("in", "callback")]


@pytest_twisted.ensureDeferred
async def test_long_call_reserves_more_as_it_goes_and_is_not_cut(harness):
    """700 s of talk with enough credit: the 300 s quota is extended, twice, never cut."""
    h = harness
    cbid, a, b = await h.bridged()
    held = h.sql("SELECT sum(amount) FROM tb_reservations")[0][0]
    assert held < Decimal(2)  # a quota, not the whole credit
    await h.advance(700, step=1)
    assert b.state == "answered"
    assert h.sql("SELECT sum(amount) FROM tb_reservations")[0][0] > held
    b.far_hangs_up()
    await h.until(lambda: h.status(cbid)[0] == "completed")
    rows = h.cdrs(cbid)
    assert rows[1][2] == "normal" and 700 <= rows[1][3] <= 702
    assert h.credit() == Decimal(10) - rows[0][4] - rows[1][4]
    assert h.sql("SELECT count(*) FROM tb_reservations")[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_stopping_waits_for_live_calls_to_settle(harness):
    """At shutdown the legs end first; the dispatcher waits until their CDRs are written."""
    h = harness
    cbid, a, b = await h.bridged()
    await h.advance(30, step=1)
    for leg in (b, a):
        leg.far_hangs_up(200, "shutdown")
    await h.dispatcher.stopService()
    assert h.status(cbid)[0] == "completed"
    assert [r[0] for r in h.cdrs(cbid)] == ["A", "B"]


@pytest_twisted.ensureDeferred
async def test_a_hanging_up_while_b_rings_cancels_b(harness):
    """A leaves while B rings: B is cancelled, both CDRs written, nothing charged for B."""
    h = harness
    cbid = await h.alices_callback()
    a = await h.leg(1)
    a.far_answers()
    b = await h.leg(2)
    b.far_rings()
    a.far_hangs_up()
    await h.until(lambda: h.status(cbid)[0] == "failed")
    assert b.state == "ended"
    rows = h.cdrs(cbid)
    assert [(r[0], r[4]) for r in rows][1] == ("B", Decimal(0))
    assert h.credit() == Decimal(10) - rows[0][4]
    assert h.sql("SELECT count(*) FROM tb_reservations")[0][0] == 0


@pytest_twisted.ensureDeferred
async def test_calling_card_answers_asks_pin_and_bills_the_forwarded_leg(harness):
    """An access number with ivrid: answered, PIN, destination, B bridged; only B is billed."""
    h = harness
    [(campaign,)] = h.sql("INSERT INTO tb_ccampaigns (name, ivrscript) "
                          "VALUES ('card', 'callingcard') RETURNING id")
    h.sql("UPDATE tb_user SET ivrid = %s WHERE username = '4930777'", (campaign,))
    await h.root.reload()
    access = await h.root.store.users.access_number("4930777")
    leg = FakeLeg(h.fake, "t2", "in")
    h.fake.legs[leg.id] = leg
    Inbound(h.dispatcher).inboundCall(leg, None, access, Caller("4917055", "anonymous"))
    h.root.settings = h.root.settings.with_value("freeivraccess", "2")
    await h.until(lambda: leg.state == "answered" or leg.state == "ended")
    assert leg.state == "ended" and leg.final_code == 403  # freeivraccess was 0: dropped
    leg = FakeLeg(h.fake, "t3", "in")
    h.fake.legs[leg.id] = leg
    Inbound(h.dispatcher).inboundCall(leg, None, access, Caller("4917055", "anonymous"))
    await h.until(lambda: leg.state == "answered")
    await h.advance(2)
    leg.far_presses("1234#")
    await h.advance(2)
    leg.far_presses("4420111#")
    b = await h.leg(1)
    assert b.uri.startswith("sip:4420111@")
    b.far_answers()
    await h.advance(20, step=1)
    leg.far_hangs_up()
    await h.until(lambda: b.state == "ended")
    await h.until(lambda: len(h.sql("SELECT 1 FROM tb_cdrs WHERE leg = 'B' AND settled")) == 1)
    rows = h.sql("SELECT leg, result, cost, userid FROM tb_cdrs ORDER BY id")
    legs = {r[0]: r for r in rows}
    assert legs["in"][1] == "normal" and legs["in"][3] == legs["B"][3] == alice(h)
    assert legs["in"][2] == 0 and legs["B"][2] == Decimal("0.05") + Decimal("0.12") * 30 / 60
    assert h.credit() == Decimal(10) - legs["B"][2]


@pytest_twisted.ensureDeferred
async def test_reload_refuses_a_broken_script_and_keeps_the_tables_in_force(harness, tmp_path):
    """A script with a bad line: reload fails naming file:line; the old tables stay."""
    h = harness
    before = h.dispatcher.tables
    broken = tmp_path / "ivr" / "mine.ivr"
    broken.write_text("play welcome\npin tries=lots\n")
    try:
        await h.root.reload()
    except ConfigError as e:
        assert any(m.startswith(f"{broken}:2: ") for m in e.errors), e.errors
    else:
        raise AssertionError("reload accepted a broken script")
    assert h.dispatcher.tables is before
    broken.write_text("play welcome\npin tries=2\nconnect\n")
    await h.root.reload()
    assert "mine" in h.dispatcher.tables.scripts and h.dispatcher.tables is not before


@pytest_twisted.ensureDeferred
async def test_ani_trigger_the_policy_left_unpaid_stores_no_payer(harness):
    """ivrauthentication 3 (only PIN): a known A-number does not pick the payer; the row
    has none, so the IVR will take any user's PIN."""
    h = harness
    h.sql("INSERT INTO tb_anumbers (anumber, userid) VALUES ('4917011', %s)", (alice(h),))
    h.root.settings = h.root.settings.with_value("ivrauthentication", "3")
    access = await h.root.store.users.access_number("4930555")
    leg = FakeLeg(h.fake, "t4", "in")
    h.fake.legs[leg.id] = leg
    Inbound(h.dispatcher).inboundCall(leg, None, access, Caller("4917011", "ip"))
    await h.until(lambda: leg.state == "ended")
    assert leg.final_code == 480
    assert h.sql("SELECT userid, authenticated FROM tb_callbacks") == [(None, False)]


@pytest_twisted.ensureDeferred
async def test_drain_keeps_live_calls_refuses_new_ones_and_queues_requests(harness):
    """While drained: the bridged call goes on, an incoming call gets 503, a new request is
    stored but not dialled; after resume it is dialled."""
    h = harness
    cbid, a, b = await h.bridged()
    assert h.dispatcher.drain() == 1
    assert "draining: 1 live call(s) left; no new calls" in h.dispatcher.status_lines()
    access = await h.root.store.users.access_number("4930555")
    user = await h.root.store.users.by_username("alice")
    leg = FakeLeg(h.fake, "t2", "in")
    h.fake.legs[leg.id] = leg
    Inbound(h.dispatcher).inboundCall(leg, None, access, Caller("4917011", "ip", user=user))
    assert leg.final_code == 503
    second = await h.alices_callback()
    await h.advance(10, step=0.5)
    assert len(h.fake.originated) == 2 and h.status(second)[0] == "pending"
    assert b.state == "answered"
    b.far_hangs_up()
    await h.until(lambda: h.status(cbid)[0] == "completed")
    h.dispatcher.resume()
    await h.leg(3)
    assert not any(line.startswith("draining") for line in h.dispatcher.status_lines())
