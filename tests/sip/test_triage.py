"""Incoming INVITE triage: 404, traffic-sender IP, digest 401/403, free access."""

from decimal import Decimal

from twisted.internet import defer
from twisted.internet.task import Clock

from mizu.settings import Settings
from mizu.sip import digest
from mizu.sip.fake import FakeTelephony
from mizu.sip.triage import Triage
from mizu.store.users import User
from mizu.telephony import Invite


def user(id, username, usertype="enduser", password="", iscallback=0, ivrid=0, authip="",
         anumberlookup=0):
    return User(id, username, password, "", usertype, Decimal(5), iscallback, anumberlookup,
                ivrid, authip, "")


class Directory:
    """Users as the store would return them."""

    def __init__(self, *users, anumbers=None):
        self.users = {u.username: u for u in users}
        self.anumbers = anumbers or {}

    def by_username(self, name):
        return defer.succeed(self.users.get(name))

    def access_number(self, number):
        u = self.users.get(number)
        return defer.succeed(u if u is not None and u.is_access_number else None)

    def traffic_sender_for(self, host):
        return defer.succeed(next((u for u in self.users.values()
                                   if u.usertype == "trafficsender" and u.allows_ip(host)),
                                  None))

    def by_anumber(self, anumber):
        return defer.succeed(self.users.get(self.anumbers.get(anumber)))


class Core:
    def __init__(self):
        self.calls = []

    def inboundCall(self, leg, invite, access, caller):
        self.calls.append((leg, access, caller))


DID = user(1, "4930555", iscallback=6, anumberlookup=1)
ALICE = user(2, "alice", password="wonder")
CARRIER = user(3, "carrier", usertype="trafficsender", authip="10.1.0.0/16, 192.0.2.7")
OWNER = user(4, "bob")


def invite(number="4930555", host="127.0.0.1", authorization="", pai=""):
    return Invite(f"sip:{number}@127.0.0.1:5070", '"A" <sip:+4917012345@x>;tag=1',
                  f"<sip:{number}@127.0.0.1>", pai, authorization, "cid", host, 5090)


def setup(free=0):
    core, phone = Core(), FakeTelephony()
    triage = Triage(Directory(DID, ALICE, CARRIER, OWNER, anumbers={"4917012345": "bob"}),
                    lambda: Settings(freeivraccess=free), Clock(), core=core)
    phone.setIncomingHandler(triage)
    return triage, core, phone


def test_unknown_number_is_404():
    """An INVITE for a number that is no access number is refused 404."""
    _, core, phone = setup()
    leg = phone.incoming(invite(number="999"))
    assert leg.actions == [("reject", 404, "Not Found", ())] and core.calls == []


def test_traffic_sender_ip_authenticates_and_anumber_lookup_finds_the_user():
    """A carrier's address (CIDR) lets the call in; anumberlookup finds the enduser."""
    _, core, phone = setup()
    phone.incoming(invite(host="10.1.2.3"))
    (leg, access, caller), = core.calls
    assert access.username == "4930555"
    assert caller.method == "ip" and caller.sender.username == "carrier"
    assert caller.anumber == "4917012345" and caller.user.username == "bob"


def test_p_asserted_identity_wins_over_from():
    """With P-Asserted-Identity present, the A-number comes from it."""
    _, core, phone = setup()
    phone.incoming(invite(host="192.0.2.7", pai="<tel:+4917099999>"))
    assert core.calls[0][2].anumber == "4917099999" and core.calls[0][2].user is None


def challenge_then_answer(triage, phone, username, password, **kw):
    first = phone.incoming(invite())
    code, _, headers = first.actions[0][1:]
    assert code == 401
    params = digest.parse_authorization(headers[0].split(":", 1)[1])
    params.update(username=username, uri="sip:4930555@127.0.0.1:5070", nc="00000001",
                  cnonce="c0ffee", qop="auth")
    params.update(kw)
    params["response"] = digest.expected_response(params, "INVITE", password)
    header = "Digest " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    return phone.incoming(invite(authorization=header)), header


def test_digest_challenge_then_success():
    """No credentials: 401 with a challenge; the right answer gets the call through."""
    triage, core, phone = setup()
    leg, _ = challenge_then_answer(triage, phone, "alice", "wonder")
    assert leg.actions == [] and core.calls[0][2].method == "digest"
    assert core.calls[0][2].user.username == "alice"


def test_wrong_password_is_403():
    """A wrong digest response is refused 403."""
    triage, core, phone = setup()
    leg, _ = challenge_then_answer(triage, phone, "alice", "guess")
    assert leg.actions == [("reject", 403, "Forbidden", ())] and core.calls == []


def test_unknown_user_and_traffic_sender_names_are_403():
    """Digest only authenticates end users."""
    triage, core, phone = setup()
    assert challenge_then_answer(triage, phone, "nobody", "x")[0].actions[0][1] == 403
    assert challenge_then_answer(triage, phone, "carrier", "")[0].actions[0][1] == 403


def test_a_replayed_nonce_is_challenged_again_as_stale():
    """Nonces are single-use: replaying a good Authorization gets a fresh 401."""
    triage, core, phone = setup()
    _, header = challenge_then_answer(triage, phone, "alice", "wonder")
    replay = phone.incoming(invite(authorization=header))
    assert replay.actions[0][1] == 401 and "stale=true" in replay.actions[0][3][0]
    assert len(core.calls) == 1


def test_freeivraccess_lets_anonymous_callers_in():
    """With freeivraccess set, an unauthenticated caller reaches the core as anonymous."""
    _, core, phone = setup(free=3)
    phone.incoming(invite())
    assert core.calls[0][2].method == "anonymous"


def test_malformed_authorization_is_403():
    """An Authorization header that is no digest is refused."""
    _, core, phone = setup()
    leg = phone.incoming(invite(authorization="Basic Zm9vOmJhcg=="))
    assert leg.actions[0][1] == 403 and core.calls == []


def test_without_a_core_calls_are_refused_480():
    """Until the callback core is attached, authenticated calls are refused 480."""
    phone = FakeTelephony()
    triage = Triage(Directory(DID, CARRIER), lambda: Settings(), Clock())
    phone.setIncomingHandler(triage)
    leg = phone.incoming(invite(host="10.1.0.9"))
    assert leg.actions == [("reject", 480, "Temporarily Unavailable", ())]


def test_database_outage_is_503_and_a_bug_is_500():
    """A store failure refuses the call 503 (retry later); anything else 500."""
    from mizu.errors import StoreUnavailable

    class Broken(Directory):
        def __init__(self, error):
            super().__init__()
            self.error = error

        def access_number(self, number):
            return defer.fail(self.error)

    for error, code in ((StoreUnavailable("database unavailable"), 503),
                        (KeyError("bug"), 500)):
        phone = FakeTelephony()
        phone.setIncomingHandler(Triage(Broken(error), lambda: Settings(), Clock()))
        assert phone.incoming(invite()).actions[0][1] == code


def test_an_empty_password_never_authenticates():
    """A user provisioned without a password (the column default) cannot log in by digest,
    not even with an empty password."""
    core, phone = Core(), FakeTelephony()
    nopass = user(5, "4930777", iscallback=6)
    triage = Triage(Directory(DID, nopass), lambda: Settings(), Clock(), core=core)
    phone.setIncomingHandler(triage)
    leg, _ = challenge_then_answer(triage, phone, "4930777", "")
    assert leg.actions[0][1] == 403 and core.calls == []


def test_the_digest_uri_must_be_the_request_uri():
    """A response computed for another URI is refused, even with the right password."""
    triage, core, phone = setup()
    leg, _ = challenge_then_answer(triage, phone, "alice", "wonder",
                                   uri="sip:other@127.0.0.1:5070")
    assert leg.actions[0][1] == 403 and core.calls == []


def test_a_digest_caller_cannot_choose_its_number_by_p_asserted_identity():
    """P-Asserted-Identity is trusted from traffic senders only; digest callers get From."""
    triage, core, phone = setup()
    first = phone.incoming(invite())
    params = digest.parse_authorization(first.actions[0][3][0].split(":", 1)[1])
    params.update(username="alice", uri="sip:4930555@127.0.0.1:5070", nc="00000001",
                  cnonce="c0ffee", qop="auth")
    params["response"] = digest.expected_response(params, "INVITE", "wonder")
    header = "Digest " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    phone.incoming(invite(authorization=header, pai="<sip:+4411111@x>"))
    assert core.calls[0][2].anumber == "4917012345"


class Counting(Directory):
    """Counts the queries triage makes."""

    queries = 0

    def access_number(self, number):
        self.queries += 1
        return super().access_number(number)


def banning_setup():
    from mizu.bans import Bans

    clock, core, phone = Clock(), Core(), FakeTelephony()
    directory = Counting(DID, ALICE)
    bans = Bans(clock, failures=10, window=60, duration=900)
    triage = Triage(directory, lambda: Settings(), clock, core=core, bans=bans)
    phone.setIncomingHandler(triage)
    return triage, core, phone, directory, bans, clock


def test_ten_digest_failures_ban_the_source_without_database_queries():
    """Ten wrong passwords within a minute ban the address: then even the right one gets
    403, and no query reaches the database; other addresses are not affected."""
    triage, core, phone, directory, bans, clock = banning_setup()
    for _ in range(10):
        leg, _ = challenge_then_answer(triage, phone, "alice", "guess")
        assert leg.actions[0][1] == 403
    assert bans.is_banned("sip", "127.0.0.1")
    before = directory.queries
    banned = phone.incoming(invite())
    assert banned.actions == [("reject", 403, "Forbidden", ())]
    assert directory.queries == before and core.calls == []
    elsewhere = phone.incoming(invite(host="127.0.0.2"))
    assert elsewhere.actions[0][1] == 401
    clock.advance(901)
    leg, _ = challenge_then_answer(triage, phone, "alice", "wonder")
    assert core.calls and leg.actions == []


def test_a_caller_who_hangs_up_during_triage_is_not_handed_on():
    """The leg is checked after the database answers: a cancelled call never reaches the
    core and gets no response."""
    core, phone = Core(), FakeTelephony()
    answers = []

    class Slow(Directory):
        def access_number(self, number):
            d = defer.Deferred()
            answers.append(d)
            return d

    triage = Triage(Slow(DID, CARRIER), lambda: Settings(), Clock(), core=core)
    phone.setIncomingHandler(triage)
    leg = phone.incoming(invite(host="10.1.0.9"))
    leg.far_hangs_up(487, "Request Terminated")
    answers[0].callback(DID)
    assert core.calls == [] and leg.actions == []
