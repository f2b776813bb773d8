"""The access-number policy (SPEC §4, §6), row by row: drop, IVR or call back, who pays."""

import dataclasses
from decimal import Decimal

import pytest

from mizu.dispatch.policy import CALLBACK, DROP, IVR, Decision, decide
from mizu.settings import Settings
from mizu.store.users import User
from mizu.telephony import Caller

DID = "4930555"
ANUM = "4917012345"


def user(id, username, usertype="enduser", iscallback=0, ivrid=0, anumberlookup=0):
    return User(id, username, "secret", "1234", usertype, Decimal(5), iscallback,
                anumberlookup, ivrid, "", "")


def access(iscallback=0, ivrid=0, anumberlookup=0):
    return user(1, DID, iscallback=iscallback, ivrid=ivrid, anumberlookup=anumberlookup)


ALICE = user(10, "alice")            # authenticates by SIP digest
BOB = user(11, "bob")                # owns ANUM in tb_anumbers
SENDER = user(30, "carrier", usertype="trafficsender")

DIGEST = Caller(ANUM, "digest", user=ALICE)
IP_LOOKUP = Caller(ANUM, "ip", user=BOB, sender=SENDER)   # anumberlookup = 1 found BOB
IP = Caller(ANUM, "ip", sender=SENDER)                    # trusted A-number, no user
ANON = Caller(ANUM, "anonymous")                          # let in by freeivraccess


def cb(userid, auth, pin, campaign=0, add=False, cid=DID):
    return Decision(CALLBACK, campaign, userid, auth, pin, add, cid, "")


def ivr(userid, auth, pin, campaign=0, add=False):
    return Decision(IVR, campaign, userid, auth, pin, add, "", "")


DROPPED = Decision(DROP, 0, None, False, "never", False, "", "")


def row(id, expect, *, at=None, caller=IP, ani=None, why="", **settings):
    """One case: the access number ``at``, ``caller``, the A-number's owner ``ani``."""
    return pytest.param(at or access(iscallback=2), caller, ani, Settings(**settings),
                        expect, why, id=id)


# Settings default to the SPEC's: anumberhandling 3, ivrauthentication 0, freeivraccess 0.
H0 = {"anumberhandling": 0}  # no A-number acceptance, to isolate other settings
ROWS = [
    # iscallback 1: act on anumberhandling.
    row("mode1-digest-calls-back", cb(10, True, "never"), at=access(1), caller=DIGEST),
    row("mode1-stranger-ivr-pin-add", ivr(None, False, "if-needed", add=True),
        at=access(1)),
    row("mode1-handling0-anumber-owner-is-stranger", ivr(None, False, "if-needed"),
        at=access(1), ani=BOB, **H0),
    row("mode1-handling1-anumber-owner-is-stranger", ivr(None, False, "if-needed"),
        at=access(1), ani=BOB, anumberhandling=1),
    row("mode1-handling1-unknown-number-added", ivr(None, False, "if-needed", add=True),
        at=access(1), anumberhandling=1),
    row("mode1-handling2-accepts", cb(11, True, "never"), at=access(1), ani=BOB,
        anumberhandling=2),
    row("mode1-handling2-never-adds", ivr(None, False, "if-needed"), at=access(1),
        anumberhandling=2),
    row("mode1-handling3-accepts", cb(11, True, "never"), at=access(1), ani=BOB),
    row("mode1-handling0-anumberlookup-accepts", cb(11, True, "never"),
        at=access(1, anumberlookup=1), ani=BOB, **H0),
    # iscallback 2-7.
    row("mode2-digest-calls-back", cb(10, True, "never"), caller=DIGEST),
    row("mode2-ip-lookup-calls-back", cb(11, True, "never"), caller=IP_LOOKUP, ani=BOB),
    row("mode2-ip-without-user-is-stranger", ivr(None, False, "if-needed"), **H0),
    row("mode3-digest-ivr", ivr(10, True, "never", campaign=5), at=access(3, ivrid=5),
        caller=DIGEST),
    row("mode3-stranger-called-back-pin", cb(None, False, "if-needed", add=True),
        at=access(3)),
    row("mode4-digest-calls-back", cb(10, True, "never"), at=access(4), caller=DIGEST),
    row("mode4-stranger-dropped", DROPPED, at=access(4), why="iscallback 4"),
    row("mode5-digest-dropped", DROPPED, at=access(5), caller=DIGEST, why="iscallback 5"),
    row("mode5-stranger-called-back-pin", cb(None, False, "if-needed", add=True),
        at=access(5)),
    row("mode6-digest-calls-back", cb(10, True, "never"), at=access(6), caller=DIGEST),
    row("mode6-stranger-called-back-pin-free0", cb(None, False, "if-needed"), at=access(6),
        **H0),
    row("mode7-digest-ivr", ivr(10, True, "never"), at=access(7), caller=DIGEST),
    row("mode7-stranger-ivr-pin", ivr(None, False, "if-needed"), at=access(7), **H0),
    # iscallback >= 8: call back into that campaign.
    row("mode12-digest-campaign12", cb(10, True, "never", campaign=12), at=access(12),
        caller=DIGEST),
    row("mode8-stranger-ivrauth1-pin", cb(None, False, "if-needed", campaign=8),
        at=access(8), ivrauthentication=1, **H0),
    row("mode12-beats-ivrid-and-default", cb(10, True, "never", campaign=12),
        at=access(12, ivrid=5), caller=DIGEST, defcallbackivr=7),
    # Calling card: iscallback 0, ivrid set; neither set: not an access number.
    row("card-digest-ivr", ivr(10, True, "never", campaign=5), at=access(0, ivrid=5),
        caller=DIGEST),
    row("card-stranger-pin", ivr(None, False, "if-needed", campaign=5),
        at=access(0, ivrid=5), **H0),
    row("card-anumber-owner-ivr", ivr(11, True, "never", campaign=5), at=access(0, ivrid=5),
        ani=BOB),
    row("card-anonymous-free-ivr", ivr(99, True, "never", campaign=5),
        at=access(0, ivrid=5), caller=ANON, freeivraccess=2, freeaccessuserid=99),
    row("not-an-access-number", DROPPED, at=access(0, 0), caller=DIGEST,
        why="not an access number"),
    # Campaigns and caller ID.
    row("callback-ivrid", cb(10, True, "never", campaign=5), at=access(6, ivrid=5),
        caller=DIGEST, defcallbackivr=7),
    row("callback-defcallbackivr", cb(10, True, "never", campaign=7), at=access(6),
        caller=DIGEST, defcallbackivr=7),
    row("ivr-ignores-defcallbackivr", ivr(None, False, "if-needed"), defcallbackivr=7, **H0),
    row("ivr-ivrid", ivr(10, True, "never", campaign=5), at=access(7, ivrid=5),
        caller=DIGEST, defcallbackivr=7),
    row("callerid-callbackcallernumber", cb(10, True, "never", cid="+4930999"),
        caller=DIGEST, callbackcallernumber="+4930999"),
    row("callerid-empty-is-access-number", cb(10, True, "never", cid=DID), caller=DIGEST,
        callbackcallernumber=""),
    # ivrauthentication 0-4 (anumberhandling 0, so only ivrauthentication accepts).
    row("ivrauth0-anumber-owner-is-stranger", ivr(None, False, "if-needed"), ani=BOB, **H0),
    row("ivrauth1-anumber-accepted", cb(11, True, "never"), ani=BOB, ivrauthentication=1,
        **H0),
    row("ivrauth1-stranger-pin", ivr(None, False, "if-needed"), ivrauthentication=1, **H0),
    row("ivrauth2-anumber-accepted", cb(11, True, "never"), ani=BOB, ivrauthentication=2,
        **H0),
    row("ivrauth2-stranger-dropped", DROPPED, ivrauthentication=2, why="ivrauthentication 2",
        **H0),
    row("ivrauth2-stranger-free-callback", cb(99, True, "never"), at=access(6),
        ivrauthentication=2, freeivraccess=1, freeaccessuserid=99, **H0),
    row("ivrauth2-free-without-payer-dropped", DROPPED, at=access(6), ivrauthentication=2,
        freeivraccess=1, why="no PIN", **H0),
    row("ivrauth3-anumber-never-authenticates", ivr(None, False, "always"), ani=BOB,
        ivrauthentication=3),
    row("ivrauth3-stranger-pin-always-add", cb(None, False, "always", add=True),
        at=access(6), ivrauthentication=3),
    row("ivrauth3-digest-authenticated", cb(10, True, "never"), caller=DIGEST,
        ivrauthentication=3),
    row("ivrauth3-ip-lookup-authenticated", cb(11, True, "never"), caller=IP_LOOKUP, ani=BOB,
        ivrauthentication=3),
    row("ivrauth4-anumber-owner-pin-always", cb(11, False, "always"), ani=BOB,
        ivrauthentication=4),
    row("ivrauth4-anumber-owner-ivr", ivr(11, False, "always"), at=access(7), ani=BOB,
        ivrauthentication=4),
    row("ivrauth4-owner-known-for-mode4", cb(11, False, "always"), at=access(4), ani=BOB,
        ivrauthentication=4),
    row("ivrauth4-owner-known-for-mode5", DROPPED, at=access(5), ani=BOB,
        ivrauthentication=4, why="iscallback 5"),
    row("ivrauth4-unknown-number-dropped", DROPPED, ivrauthentication=4,
        why="ivrauthentication 4"),
    row("ivrauth4-unknown-number-free-ivr", ivr(99, True, "never"), at=access(7),
        ivrauthentication=4, freeivraccess=2, freeaccessuserid=99),
    row("ivrauth4-digest-authenticated", cb(10, True, "never"), caller=DIGEST,
        ivrauthentication=4),
    row("ivrauth4-owner-not-free", ivr(11, False, "always"), at=access(7), ani=BOB,
        ivrauthentication=4, freeivraccess=3, freeaccessuserid=99),
    # freeivraccess 0-3, freeaccessuserid set and unset, for a trusted stranger.
    row("free0-callback-pin", cb(None, False, "if-needed"), at=access(6),
        freeaccessuserid=99, **H0),
    row("free0-ivr-pin", ivr(None, False, "if-needed"), at=access(7), freeaccessuserid=99,
        **H0),
    row("free1-callback-paid", cb(99, True, "never"), at=access(6), freeivraccess=1,
        freeaccessuserid=99),
    row("free1-callback-no-payer-pin", cb(None, False, "if-needed", add=True), at=access(6),
        freeivraccess=1),
    row("free1-ivr-not-free", ivr(None, False, "if-needed"), at=access(7), freeivraccess=1,
        freeaccessuserid=99, **H0),
    row("free2-ivr-paid", ivr(99, True, "never"), at=access(7), freeivraccess=2,
        freeaccessuserid=99),
    row("free2-callback-not-free", cb(None, False, "if-needed"), at=access(6),
        freeivraccess=2, freeaccessuserid=99, **H0),
    row("free3-callback-paid", cb(99, True, "never"), at=access(6), freeivraccess=3,
        freeaccessuserid=99),
    row("free3-ivr-paid", ivr(99, True, "never"), at=access(7), freeivraccess=3,
        freeaccessuserid=99),
    row("free3-ivr-no-payer-pin", ivr(None, False, "if-needed"), at=access(7),
        freeivraccess=3, **H0),
    row("free3-digest-pays-himself", cb(10, True, "never"), at=access(6), caller=DIGEST,
        freeivraccess=3, freeaccessuserid=99),
    row("free3-anumber-owner-pays-himself", ivr(11, True, "never"), at=access(7), ani=BOB,
        freeivraccess=3, freeaccessuserid=99),
    # Anonymous callers: only the services freeivraccess opens.
    row("anon-free1-callback-no-payer-pin", cb(None, False, "if-needed"), at=access(6),
        caller=ANON, freeivraccess=1, **H0),
    row("anon-free2-no-callback", DROPPED, at=access(6), caller=ANON, freeivraccess=2,
        freeaccessuserid=99, why="anonymous"),
    row("anon-free1-no-ivr", DROPPED, at=access(7), caller=ANON, freeivraccess=1,
        freeaccessuserid=99, why="anonymous"),
    row("anon-free2-ivr-paid", ivr(99, True, "never"), at=access(7), caller=ANON,
        freeivraccess=2, freeaccessuserid=99),
    row("anon-free3-mode3-callback-paid", cb(99, True, "never"), at=access(3), caller=ANON,
        freeivraccess=3, freeaccessuserid=99),
    row("anon-anumber-owner-called-back", cb(11, True, "never"), caller=ANON, ani=BOB,
        freeivraccess=2),
    row("anon-anumber-owner-ivr-needs-pin", ivr(None, False, "if-needed"), at=access(7),
        caller=ANON, ani=BOB, freeivraccess=2),
    row("anon-anumber-owner-ivr-closed", DROPPED, at=access(7), caller=ANON, ani=BOB,
        freeivraccess=1, why="anonymous"),
    row("anon-ivrauth4-owner-ivr-pin", ivr(11, False, "always"), at=access(7), caller=ANON,
        ani=BOB, freeivraccess=1, ivrauthentication=4),
    # A-numbers: a callback needs one; only dialable, unknown ones are added.
    row("callback-needs-dialable-anumber", DROPPED, at=access(6),
        caller=Caller("anonymous", "anonymous"), freeivraccess=1, freeaccessuserid=99,
        why="no A-number"),
    row("callback-empty-anumber-dropped", DROPPED, at=access(6), caller=Caller("", "ip"),
        why="no A-number"),
    row("ivr-empty-anumber-not-added", ivr(None, False, "if-needed"), at=access(7),
        caller=Caller("", "ip")),
    row("traffic-sender-owner-is-stranger", ivr(None, False, "if-needed"), ani=SENDER),
]


@pytest.mark.parametrize("at, caller, ani, settings, expect, why", ROWS)
def test_policy_row(at, caller, ani, settings, expect, why):
    """Each row pins one SPEC §4/§6 combination: the action, campaign, payer, PIN rule,
    A-number adding and callback caller ID; the reason is always given."""
    decision = decide(at, caller, ani, settings)
    assert dataclasses.replace(decision, reason="") == expect
    assert decision.reason
    assert why.lower() in decision.reason.lower()


def test_decide_is_pure():
    """The same inputs give the same decision, and the decision cannot be changed."""
    args = (access(6), ANON, BOB, Settings(freeivraccess=1))
    first = decide(*args)
    assert decide(*args) == first
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.action = DROP  # type: ignore[misc]
