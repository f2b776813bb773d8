"""The SMS processor with a fake dispatcher and store: what each text does, what is stored,
what the SMSC is answered and what the sender is told."""

from decimal import Decimal

import pytest_twisted
from smpp.pdu.pdu_types import CommandStatus
from twisted.internet import defer, task

from mizu.bans import Bans
from mizu.config import SmppConfig
from mizu.errors import AuthenticationFailed, BadRequest, StoreUnavailable
from mizu.metrics import Metrics
from mizu.sms.esme import InboundSms
from mizu.sms.processor import SmsProcessor
from mizu.store.users import User

OK, RETRY = CommandStatus.ESME_ROK, CommandStatus.ESME_RX_T_APPN


def user(uid, name, pin="", usertype="enduser"):
    return User(uid, name, "pw-" + name, pin, usertype, Decimal("5"), 0, 0, 0, "", "")


ALICE = user(1, "alice", pin="1234")


class Users:
    def by_pincode(self, pin):
        return defer.succeed(ALICE if pin == "1234" else None)

    def by_anumber(self, number):
        return defer.succeed(ALICE if number == "4917011" else None)


class Ledger:
    def balance(self, userid):
        return defer.succeed(Decimal("5.25"))


class Dispatcher:
    def __init__(self):
        self.metrics = Metrics()
        self.core = type("Core", (), {})()
        self.core.store = type("Store", (), {"users": Users(), "ledger": Ledger()})()
        self.submitted = []
        self.fail = None

    def submit(self, request, user=None):
        assert user is not None and user.id == request.userid
        if self.fail:
            return defer.fail(self.fail)
        self.submitted.append(request)
        return defer.succeed(100 + len(self.submitted))

    def payer(self, request):
        """As the real dispatcher: by PIN, or by username and password."""
        if request.pincode:
            if request.pincode == "1234":
                return defer.succeed((ALICE, True))
            return defer.fail(AuthenticationFailed("wrong PIN"))
        if (request.username, request.password) == ("alice", "wonder"):
            return defer.succeed((ALICE, True))
        return defer.fail(AuthenticationFailed("wrong username or password"))


class World:
    def __init__(self, **config):
        self.clock = task.Clock()
        self.dispatcher = Dispatcher()
        self.bans = Bans(self.clock, failures=3)
        self.replies = []
        self.config = SmppConfig(**config)
        self.processor = SmsProcessor(self.dispatcher, self.bans, self.clock,
                                      lambda: self.config, self.reply)

    def reply(self, to, text):
        self.replies.append((to, text))
        return defer.succeed("m1")

    async def text(self, text, sender="4917011", esm=0, coding=0, data=None):
        body = data if data is not None else text.encode("ascii")
        return await self.processor.deliver(InboundSms(sender, "4000", esm, coding, body))


@pytest_twisted.ensureDeferred
async def test_cb_from_a_registered_number():
    world = World()
    assert await world.text("cb 4420111") == OK
    (request,) = world.dispatcher.submitted
    assert (request.anum, request.bnum, request.source, request.userid) == (
        "4917011", "4420111", "sms", 1)
    assert world.replies == [("4917011", "Callback 101 accepted: we will call 4917011, "
                                         "then 4420111.")]


@pytest_twisted.ensureDeferred
async def test_pin_forms_and_phone_to_phone():
    world = World()
    assert await world.text("1234 4930111", sender="4400999") == OK
    assert await world.text("1234 4930111 4420111", sender="4400999") == OK
    assert [(r.anum, r.bnum, r.userid) for r in world.dispatcher.submitted] == [
        ("4930111", "", 1), ("4930111", "4420111", 1)]


@pytest_twisted.ensureDeferred
async def test_username_and_password():
    world = World()
    assert await world.text("alice wonder 4930111", sender="4400999") == OK
    assert world.dispatcher.submitted[0].anum == "4930111"


@pytest_twisted.ensureDeferred
async def test_balance():
    world = World()
    assert await world.text("BALANCE") == OK
    assert world.replies == [("4917011", "Your balance is 5.25.")]
    assert not world.dispatcher.submitted


@pytest_twisted.ensureDeferred
async def test_refusals_store_nothing_and_say_why():
    world = World()
    assert await world.text("cb", sender="4400999") == OK  # unknown sender
    assert await world.text("hello there") == OK
    assert await world.text("9999 4930111") == OK
    assert await world.text("alice guess 4930111") == OK
    assert not world.dispatcher.submitted
    reasons = [text for _, text in world.replies]
    assert reasons[0].startswith("Not accepted: the number 4400999 is not registered")
    assert reasons[2:] == ["Not accepted: wrong PIN.",
                           "Not accepted: wrong username or password."]


@pytest_twisted.ensureDeferred
async def test_failed_pins_ban_the_sender():
    world = World()
    for pin in ("1111", "2222", "3333"):
        await world.text(f"{pin} 4930111", sender="4400999")
    assert await world.text("1234 4930111", sender="4400999") == OK
    assert not world.dispatcher.submitted  # banned: even the right PIN
    assert len(world.replies) == 3
    assert await world.text("1234 4930111", sender="4400888") == OK
    assert len(world.dispatcher.submitted) == 1


@pytest_twisted.ensureDeferred
async def test_a_bad_number_is_refused_by_the_dispatcher():
    world = World()
    world.dispatcher.fail = BadRequest("B-number '1' is not a phone number")
    assert await world.text("cb 4420111") == OK
    assert world.replies[0][1] == "Not accepted: B-number '1' is not a phone number."


@pytest_twisted.ensureDeferred
async def test_a_store_failure_asks_the_smsc_to_retry():
    world = World()
    world.dispatcher.fail = StoreUnavailable("database unreachable")
    assert await world.text("cb 4420111") == RETRY
    assert world.replies == []
    world.dispatcher.fail = None
    assert await world.text("cb 4420111") == OK  # the SMSC's retry is stored
    assert len(world.dispatcher.submitted) == 1


@pytest_twisted.ensureDeferred
async def test_copies_are_left_to_the_store_within_the_window():
    """Each request says how recent a copy counts as the same (the store finds it)."""
    world = World(duplicate_window=90)
    await world.text("cb 4420111")
    assert world.dispatcher.submitted[0].same_within == 90


@pytest_twisted.ensureDeferred
async def test_receipts_parts_and_unreadable_messages():
    world = World()
    receipt = b"id:m1 sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD"
    assert await world.text("", esm=0x04, data=receipt) == OK
    udh = bytes([5, 0, 3, 7, 2, 1])
    assert await world.text("", esm=0x40, data=udh + b"cb 44") == OK
    assert not world.dispatcher.submitted
    assert await world.text("", esm=0x40, data=bytes([5, 0, 3, 7, 2, 2]) + b"20111") == OK
    assert world.dispatcher.submitted[0].bnum == "4420111"
    assert await world.text("", coding=8, data=b"\x00c\x00") == OK  # odd UCS-2
    assert world.replies[-1][1].startswith("Sorry, your message could not be read")
    assert await world.text("", coding=8, data="CB".encode("utf-16-be")) == OK
    assert [r.bnum for r in world.dispatcher.submitted] == ["4420111", ""]
    counted = world.dispatcher.metrics.render().decode()
    for outcome, n in (("receipt", 1), ("part", 1), ("stored", 2), ("unreadable", 1)):
        assert f'mizu_sms_messages_total{{outcome="{outcome}"}} {n}.0' in counted


@pytest_twisted.ensureDeferred
async def test_replies_are_rationed_and_can_be_off():
    world = World()
    for _ in range(8):
        await world.text("hello there", sender="4400999")
    assert len(world.replies) == 5
    world.clock.advance(60)
    await world.text("hello there", sender="4400999")
    assert len(world.replies) == 6
    world = World(replies=False)
    await world.text("BALANCE")
    assert world.replies == []
