"""What happens to a call on an access number (SPEC §4, §6): drop, IVR now, or call back.

``decide`` is a pure function of the access number, the caller as triage saw them, the
owner of the caller's A-number in ``tb_anumbers`` and the global settings. It is applied
in three steps.

1. **Who is calling.** ``Caller.user`` (SIP digest, or a traffic sender's A-number found
   in ``tb_anumbers`` with ``anumberlookup`` = 1) authenticates the caller, whatever
   ``ivrauthentication`` says. Otherwise the A-number's owner (``ani_user``) may:

   ===================  ==========================================================
   ivrauthentication    the A-number's owner is
   ===================  ==========================================================
   0                    accepted when ``anumberhandling`` is 2 or 3, or the access
                        number has ``anumberlookup`` = 1; else a stranger
   1 (A-number or PIN)  accepted
   2 (only A-number)    accepted; strangers get no PIN prompt
   3 (only PIN)         a stranger: the A-number never authenticates by itself
   4 (A-number and PIN) the payer, but the PIN of that same user is asked (``always``);
                        callers whose A-number is unknown are strangers without a PIN
   ===================  ==========================================================

   A traffic sender's call without ``Caller.user`` is a stranger unless the A-number
   authenticates it: the sender is trusted for the A-number only, never as the payer.
2. **What to do**, from ``iscallback`` (``ivrid`` for calling cards), where "known"
   means authenticated, or A-number-known under ivrauthentication 4.
3. **Who pays.** A stranger who is not dropped is paid by ``freeaccessuserid`` when
   ``freeivraccess`` covers the action (1 callback, 2 IVR, 3 both) and that id is set;
   else they must give a PIN (``pin`` = ``if-needed``, ``always`` under
   ivrauthentication 3), or, when no PIN is possible (ivrauthentication 2 and 4), they are
   dropped.

Choices made where the SPEC is silent:

- iscallback 1 behaves like 2: ``anumberhandling`` already decides whether the A-number
  authenticates, so with 0 or 1 (no accept) A-number owners are strangers and go to the IVR.
- A callback to a stranger is allowed by the access number's own mode (3, 5, 6, >= 8 call
  strangers back; the PIN is asked when A answers): the operator chose to pay that A-leg.
  ``freeivraccess`` only waives the PIN, with ``freeaccessuserid`` as payer.
- An ``anonymous`` caller (let in only because ``freeivraccess`` is set; the From number is
  whatever they wrote) who is a stranger gets only the services ``freeivraccess`` names;
  anything else is dropped. So an unverified number is never called back on an operator's
  bill unless free callback access was switched on.
- An anonymous caller accepted by A-number alone is called back (dialling A reaches the
  number's real owner), but is not let into an answered IVR without a PIN: there the
  number is unverified, and the caller is a stranger.
- Free access applies only to strangers: a caller whose own account is known (even one who
  still has to give the PIN, ivrauthentication 4) pays from that account.
- A callback needs a dialable A-number (``clean_number``); without one the call is dropped.
- Campaign of a callback: ``iscallback`` when >= 8 (that value names the callback IVR),
  else ``ivrid``, else ``defcallbackivr``, else 0 (built-in ``callback``). Campaign of an
  answered IVR: ``ivrid``, else 0 (built-in ``callingcard``); ``defcallbackivr`` is for
  callbacks only.
- ``add_anumber`` is set only when a PIN may be asked, the A-number is dialable and it is
  not in ``tb_anumbers`` yet (it is unique there: an owned number is never moved).
- A row that is not an access number (``iscallback`` and ``ivrid`` both 0, or not an
  enduser) is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from mizu.dispatch.request import clean_number
from mizu.errors import BadRequest
from mizu.settings import Settings
from mizu.store.users import User
from mizu.telephony import Caller

DROP, IVR, CALLBACK = "drop", "ivr", "callback"
NEVER, IF_NEEDED, ALWAYS = "never", "if-needed", "always"

_FREE_FOR = {CALLBACK: (1, 3), IVR: (2, 3)}


@dataclass(frozen=True)
class Decision:
    """What to do with an incoming call on an access number.

    ``action``: DROP (refuse, store nothing), IVR (answer into the IVR now) or CALLBACK
    (never answer; call A back). ``campaign``: the ``tb_ccampaigns`` id of the IVR to run,
    0 for the built-in one (``callingcard`` for IVR, ``callback`` for CALLBACK).
    ``userid``: who pays, or None when the IVR must get a PIN. ``authenticated``: the payer
    is known and no PIN is needed. ``pin``: ``never``, ``if-needed`` (ask when not
    authenticated) or ``always`` (with ``userid`` set the PIN must be that user's).
    ``add_anumber``: after a PIN success, add the A-number to ``tb_anumbers`` for the PIN's
    user. ``caller_id``: caller ID of the callback's A-leg ('' unless CALLBACK).
    ``reason``: why, for the log (and the callback reason on DROP).
    """

    action: str
    campaign: int
    userid: int | None
    authenticated: bool
    pin: str
    add_anumber: bool
    caller_id: str
    reason: str


@dataclass(frozen=True)
class _Identity:
    """The payer step 1 found: ``user`` (None for a stranger), ``confirmed`` (no PIN
    needed), ``by_ani`` (accepted on the A-number alone) and how, for the reason."""

    user: User | None
    confirmed: bool
    by_ani: bool
    how: str

    @property
    def known(self) -> bool:
        return self.user is not None


_STRANGER = _Identity(None, False, False, "not authenticated")


def decide(access: User, caller: Caller, ani_user: User | None, settings: Settings) -> Decision:
    """Decide what happens to ``caller``'s call on ``access`` (see the module docstring)."""
    if not access.is_access_number:
        return _drop(f"{access.username} is not an access number")
    who = _identify(access, caller, ani_user, settings)
    action, why = _action(access, who)
    if action == DROP:
        return _drop(why)
    if action == IVR and who.by_ani and caller.method == "anonymous":
        who = _Identity(None, False, False, f"A-number of {who.user.username} unverified")
    if action == CALLBACK and _dialable(caller.anumber) is None:
        return _drop(f"no A-number to call back ({caller.anumber!r})")
    campaign = _campaign(action, access, settings)
    caller_id = (settings.callbackcallernumber or access.username) if action == CALLBACK else ""
    if who.known:
        pin = NEVER if who.confirmed else ALWAYS
        return Decision(action, campaign, who.user.id, who.confirmed, pin,
                        _adds(pin, caller, ani_user, settings), caller_id, f"{why}; {who.how}")
    return _stranger(action, campaign, caller, ani_user, settings, caller_id, why, who)


def _drop(reason: str) -> Decision:
    return Decision(DROP, 0, None, False, NEVER, False, "", reason)


def _enduser(user: object | None) -> User | None:
    return user if isinstance(user, User) and user.usertype == "enduser" else None


def _dialable(number: str) -> str | None:
    try:
        return clean_number(number, "A-number")
    except BadRequest:
        return None


def _identify(access: User, caller: Caller, ani_user: User | None,
              settings: Settings) -> _Identity:
    """Step 1: the authenticated user, the A-number's owner to confirm by PIN, or nobody."""
    sip_user = _enduser(caller.user)
    if sip_user is not None:
        return _Identity(sip_user, True, False,
                         f"{sip_user.username} authenticated by {caller.method}")
    owner = _enduser(ani_user)
    mode = settings.ivrauthentication
    if owner is None or mode == 3:
        return _STRANGER
    if mode == 4:
        return _Identity(owner, False, False,
                         f"A-number of {owner.username}, PIN required (ivrauthentication 4)")
    if mode in (1, 2) or settings.anumberhandling in (2, 3) or access.anumberlookup == 1:
        return _Identity(owner, True, True, f"{owner.username} authenticated by A-number")
    return _STRANGER


def _action(access: User, who: _Identity) -> tuple[str, str]:
    """Step 2: the access number's mode applied to a known caller or a stranger."""
    mode = access.iscallback
    state = "known" if who.known else "not authenticated"
    if mode == 0:
        return IVR, f"calling card (ivrid {access.ivrid})"
    if mode in (1, 2):
        return (CALLBACK if who.known else IVR), f"iscallback {mode}, caller {state}"
    if mode == 3:
        return (IVR if who.known else CALLBACK), f"iscallback 3, caller {state}"
    if mode == 4:
        return (CALLBACK if who.known else DROP), f"iscallback 4, caller {state}"
    if mode == 5:
        return (DROP if who.known else CALLBACK), f"iscallback 5, caller {state}"
    if mode == 6:
        return CALLBACK, "iscallback 6: always call back"
    if mode == 7:
        return IVR, "iscallback 7: always IVR"
    return CALLBACK, f"iscallback {mode}: call back into campaign {mode}"


def _campaign(action: str, access: User, settings: Settings) -> int:
    if action == IVR:
        return access.ivrid
    if access.iscallback >= 8:
        return access.iscallback
    return access.ivrid or settings.defcallbackivr


def _adds(pin: str, caller: Caller, ani_user: User | None, settings: Settings) -> bool:
    return (settings.anumberhandling in (1, 3) and pin != NEVER and ani_user is None
            and _dialable(caller.anumber) is not None)


def _stranger(action: str, campaign: int, caller: Caller, ani_user: User | None,
              settings: Settings, caller_id: str, why: str, who: _Identity) -> Decision:
    """Step 3 for a caller nobody pays for yet: free access, a PIN, or a drop."""
    free = settings.freeivraccess in _FREE_FOR[action]
    if caller.method == "anonymous" and not free:
        return _drop(f"{why}; anonymous callers get no {action} "
                     f"(freeivraccess {settings.freeivraccess})")
    if free and settings.freeaccessuserid:
        return Decision(action, campaign, settings.freeaccessuserid, True, NEVER, False,
                        caller_id, f"{why}; free access paid by user "
                        f"{settings.freeaccessuserid}")
    if settings.ivrauthentication in (2, 4):
        return _drop(f"{why}; {who.how} and no PIN allowed "
                     f"(ivrauthentication {settings.ivrauthentication})")
    pin = ALWAYS if settings.ivrauthentication == 3 else IF_NEEDED
    return Decision(action, campaign, None, False, pin,
                    _adds(pin, caller, ani_user, settings), caller_id,
                    f"{why}; {who.how}, PIN asked")
