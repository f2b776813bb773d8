"""What each script step does, written over the waiting primitives of an ``IvrSession``
(``play``, ``next_digit``, ``ask``, ``connect``); the format is in ``mizu.ivr.script``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from mizu.errors import InsufficientCredit, NoRoute
from mizu.ivr.script import Step

if TYPE_CHECKING:
    from mizu.ivr.session import IvrSession

log = Logger()

GOODBYE = "goodbye"
FAILED = "call-failed"
NO_CREDIT = "insufficient-credit"
FINE = ("completed", "cut")  # connect outcomes after which nothing went wrong for the caller


class Stop(Exception):
    """Ends the script with ``outcome``, after playing ``prompts`` to the caller."""

    def __init__(self, outcome: str, prompts: list[str] | tuple[str, ...] = ()):
        super().__init__(outcome)
        self.outcome = outcome
        self.prompts = list(prompts)


async def read_digits(session: IvrSession, prompt: list[str], first: float, inter: float,
                      most: int) -> str:
    """Play ``prompt`` (unless digits were typed ahead) and read digits until ``#``,
    ``most`` digits, or a timeout: ``first`` for the first digit (from the end of the
    prompt), ``inter`` between digits. ``*`` starts the entry again."""
    if not session.has_typed():
        await session.play(prompt)
    digits, wait = "", first
    while len(digits) < most:
        digit = await session.next_digit(wait)
        if digit is None or digit == "#":
            break
        if digit == "*":
            digits, wait = "", first
            continue
        digits, wait = digits + digit, inter
    return digits


async def collect(session: IvrSession, step: Step, prompt: list[str], low: int, high: int,
                  tries: int, short: str) -> str:
    """Digits as ``read_digits`` gets them, at least ``low`` of them; asks again up to
    ``tries`` times in all, then ends the call: ``timeout`` when nothing at all was
    entered, else ``short``."""
    first = step.opt("first", session.limits.first_digit)
    inter = step.opt("inter", session.limits.inter_digit)
    entered = False
    for attempt in range(1, tries + 1):
        digits = await read_digits(session, prompt, first, inter, high)
        if len(digits) >= low:
            return digits
        entered = entered or bool(digits)
        log.info("ivr {name}: {step} attempt {attempt}/{tries}: {count} digit(s), need {low}",
                 name=session.name, step=step.kind, attempt=attempt, tries=tries,
                 count=len(digits), low=low)
    raise Stop(short if entered else "timeout", [GOODBYE])


async def play(session: IvrSession, step: Step) -> None:
    """``play``: the prompts, stopped by a digit unless ``barge=no``."""
    await session.play(list(step.args), barge=step.opt("barge", True), cap=step.opt("timeout"))


async def pin(session: IvrSession, step: Step) -> None:
    """``pin``: ask and check the PIN unless the caller is authenticated already."""
    if session.host.authenticated:
        return
    tries = step.opt("tries", session.limits.max_auth_fail)
    prompt = step.prompt("prompt", "enter-pin")
    wrong = step.prompt("wrong", "wrong-pin")
    ask, failures = prompt, 0
    while True:
        digits = await collect(session, step, ask, step.opt("min", 1), step.opt("max", 20),
                               session.limits.collect_tries, "timeout")
        if await session.ask(session.host.authenticate_pin, digits):
            log.info("ivr {name}: PIN accepted", name=session.name)
            return
        failures += 1
        log.info("ivr {name}: wrong PIN ({failures}/{tries})", name=session.name,
                 failures=failures, tries=tries)
        session.clear_typed()  # typed before the caller heard the PIN was wrong
        if failures >= tries:
            raise Stop("auth_failed", wrong + [GOODBYE])
        ask = wrong + prompt


async def ani(session: IvrSession, step: Step) -> None:
    """``ani``: try the A-number, silently; the script goes on either way."""
    if session.host.authenticated:
        return
    known = await session.ask(session.host.authenticate_ani)
    log.info("ivr {name}: A-number {result}", name=session.name,
             result="authenticates the caller" if known else "does not authenticate")


async def credit(session: IvrSession, step: Step) -> None:
    """``credit``: end the call when the paying user cannot afford any call."""
    try:
        enough = await session.ask(session.host.check_credit)
    except InsufficientCredit:
        enough = False
    if not enough:
        raise Stop("no_credit", step.prompt("prompt", NO_CREDIT) + [GOODBYE])


async def balance(session: IvrSession, step: Step) -> None:
    """``balance``: say the credit (a negative balance is said as zero)."""
    amount = await session.ask(session.host.balance)
    words = session.prompts.amount(max(amount, 0))
    await session.play(step.prompt("prompt", "your-balance-is") + words)


async def destination(session: IvrSession, step: Step) -> None:
    """``destination``: collect B unless it is known."""
    known = session.destination or session.host.destination
    if known:
        session.destination = known
        return
    tries = step.opt("tries", session.limits.collect_tries)
    session.destination = await collect(
        session, step, step.prompt("prompt", "enter-destination"), step.opt("min", 3),
        step.opt("max", 32), tries, "no_destination")
    log.info("ivr {name}: destination {number}", name=session.name, number=session.destination)


def _number(session: IvrSession) -> str:
    number = session.destination or session.host.destination
    if not number:
        raise Stop("no_destination", [FAILED, GOODBYE])
    session.destination = number
    return number


async def minutes(session: IvrSession, step: Step) -> None:
    """``minutes``: rate B and say how long the call may last."""
    number = _number(session)
    try:
        seconds = await session.ask(session.host.max_seconds, number)
    except NoRoute:
        raise Stop("no_route", [FAILED, GOODBYE]) from None
    except InsufficientCredit:
        seconds = 0
    if seconds <= 0:
        raise Stop("no_credit", [NO_CREDIT, GOODBYE])
    session.max_seconds = seconds
    lead = step.prompt("prompt", "you-have")
    await session.play(session.prompts.minutes(seconds, lead[0] if lead else None))


async def connect(session: IvrSession, step: Step) -> None:
    """``connect``: dial and bridge B, wait for the end of that call, say if it failed."""
    number = _number(session)
    await session.play(step.prompt("prompt", "connecting"))
    try:
        outcome = await session.connect(number)
    except NoRoute:
        outcome = "no_route"
    except InsufficientCredit:
        outcome = "no_credit"
    session.connect_outcome = outcome
    log.info("ivr {name}: the call to {number} ended: {outcome}", name=session.name,
             number=number, outcome=outcome)
    if outcome not in FINE:
        failed = [NO_CREDIT] if outcome == "no_credit" else step.prompt("failed", FAILED)
        await session.play(failed, barge=False)


async def hangup(session: IvrSession, step: Step) -> None:
    """``hangup``: the end of the script, after its prompts."""
    raise Stop(session.connect_outcome or "hangup", list(step.args))


STEPS = {"play": play, "pin": pin, "ani": ani, "credit": credit, "balance": balance,
         "destination": destination, "minutes": minutes, "connect": connect, "hangup": hangup}
UNTIMED = frozenset({"play", "connect", "hangup"})  # bounded otherwise (see script.py)
