"""One IVR session: runs a script on an answered leg, one step at a time, over the leg's
events (digits, ends of prompts, its end) and timers on a clock.

Every wait is bounded: a prompt by the prompt limit, a digit by the first- and inter-digit
timeouts, a step (but ``play``, ``connect`` and ``hangup``) by its hard timeout, and the IVR
as a whole (not the connected call) by the session limit. The session limit hangs up at
once; a step timeout says goodbye first.

The caller hanging up cancels whatever the session waits for (a timer, a prompt, a host
call, ``host.connect`` itself) and ``run()`` fires ``caller_hangup``, also when the hangup
came during ``connect``: what happened to B is the host's to record. When the caller hangs up
during the farewell (goodbye after the outcome was decided), the outcome stays as decided.

Digits pressed while a prompt plays stop it (unless the step says ``barge=no``) and are kept;
digits pressed while no step collects are kept for the next one (typed ahead), except during
``connect``, when they are B's business and dropped. Only ``0``-``9``, ``*`` and ``#`` count.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from mizu.errors import LegGone
from mizu.ivr.steps import FAILED, STEPS, UNTIMED, Stop
from mizu.telephony import ILegObserver

log = Logger()

DIGITS = frozenset("0123456789*#")


@dataclass(frozen=True)
class IvrLimits:
    """Timeouts (seconds) and counts an IVR session keeps."""

    first_digit: float = 10.0      # SPEC §5 default
    inter_digit: float = 5.0       # SPEC §5 default
    prompt_limit: float = 120.0    # hard cap on one play
    session_limit: float = 3600.0  # the IVR part of a call; the connected call has its own
    max_auth_fail: int = 3         # settings.maxivrauthfail
    collect_tries: int = 3         # how often to ask when nothing or too little was entered
    step_limit: float = 300.0      # default hard timeout of a step (its ``timeout=``)

    @classmethod
    def from_settings(cls, settings, **overrides) -> IvrLimits:
        """The limits with ``maxivrauthfail`` from the global ``Settings``."""
        return cls(max_auth_fail=settings.maxivrauthfail, **overrides)


class IIvrHost(Interface):
    """What the call flow offers the IVR: implemented by the dispatcher's call sessions."""

    authenticated = Attribute("True when the paying user is known and no PIN is needed")
    destination = Attribute("The B number already known, or ''")

    def authenticate_pin(pin):
        """Deferred[bool]: the PIN is good (the host records the user)."""

    def authenticate_ani():
        """Deferred[bool]: the A-number authenticates the caller (the host records it)."""

    def balance():
        """Deferred[Decimal]: the paying user's credit."""

    def check_credit():
        """Deferred[bool]: enough credit for a call at all."""

    def max_seconds(number):
        """Deferred[int]: how long a call to ``number`` may last; fails with ``NoRoute``
        when no rate covers it; 0 = not enough credit."""

    def connect(number):
        """Deferred[str]: dial ``number`` and bridge it with this leg; fires with the
        outcome when that call is over ('completed', 'busy', 'no_answer', 'failed',
        'no_credit', 'cut', 'no_route'). Cancelling it (the caller hung up) must tear the B
        side down."""


class _CallerLeft(Exception):
    """The caller's leg ended."""


class _Expired(Exception):
    """The session limit (``whole``) or the step's timeout ran out."""

    def __init__(self, whole: bool):
        super().__init__("session limit" if whole else "step timeout")
        self.whole = whole


@implementer(ILegObserver)
class IvrSession:
    """Runs ``script`` on an answered ``leg`` for ``host``; becomes the leg's observer."""

    def __init__(self, leg, script, host, prompts, clock, limits: IvrLimits = IvrLimits(),
                 name: str = "", on_ended=None):
        self.leg, self.script, self.host, self.prompts = leg, script, host, prompts
        self.clock, self.limits, self.on_ended = clock, limits, on_ended
        self.name = name or getattr(leg, "id", "")
        self.destination = ""          # B as collected (or as the host knew it)
        self.max_seconds: int | None = None
        self.connect_outcome: str | None = None
        self.outcome: str | None = None
        self.cause = None              # the leg's EndCause, once it ended
        self._typed: deque[str] = deque()
        self._done: Deferred | None = None
        self._pending: Deferred | None = None   # the one thing the script waits for
        self._digit_waiter: Deferred | None = None
        self._play_id = self._play_done = None
        self._barge = True
        self._gone = self._closing = self._connecting = False
        self._whole_expired = self._step_expired = False
        self._session_timer = self._step_timer = None
        self._session_left = limits.session_limit
        self._session_since = 0.0

    # -- running -------------------------------------------------------------------

    def run(self) -> Deferred:
        """Run the script; fires (never errbacks) with the outcome."""
        if self._done is not None:
            raise RuntimeError("an IvrSession runs once")
        self._done = Deferred()
        log.info("ivr {name}: script {script} starts", name=self.name, script=self.script.name)
        self.leg.observe(self)
        if self._gone:
            self._finish("caller_hangup")
        else:
            self._start_session_clock()
            Deferred.fromCoroutine(self._main()).addBoth(self._finish)
        return self._done

    async def _main(self) -> str:
        farewell: list[str] = []
        try:
            for step in self.script.steps:
                await self._step(step)
            outcome = self.connect_outcome or "hangup"
        except Stop as stop:
            outcome, farewell = stop.outcome, stop.prompts
        except _CallerLeft:
            return "caller_hangup"
        except _Expired:
            log.info("ivr {name}: the session limit ran out", name=self.name)
            outcome = "timeout"
        except Exception as e:
            log.failure("ivr {name}: the script failed", name=self.name)
            outcome, farewell = f"error: {e or type(e).__name__}", [FAILED]
        return await self._end(outcome, farewell)

    async def _step(self, step) -> None:
        log.debug("ivr {name}: line {line}: {step}", name=self.name, line=step.line,
                  step=step.kind)
        if step.kind not in UNTIMED:
            limit = step.opt("timeout", self.limits.step_limit)
            self._step_timer = self.clock.callLater(limit, self._expire_step)
        try:
            await STEPS[step.kind](self, step)
        except _Expired as e:
            if e.whole:
                raise
            log.info("ivr {name}: step {step} timed out", name=self.name, step=step.kind)
            raise Stop("timeout", ["goodbye"]) from None
        finally:
            _stop(self._step_timer)
            self._step_timer, self._step_expired = None, False

    async def _end(self, outcome: str, farewell: list[str]) -> str:
        """Say the farewell (to its end) and hang up; the outcome stands either way."""
        _stop(self._session_timer)
        self._whole_expired = self._step_expired = False
        try:
            await self.play(farewell, barge=False)
        except _CallerLeft:
            return outcome
        except Exception:
            log.failure("ivr {name}: the farewell could not be played", name=self.name)
        if not self._gone:
            self._closing = True
            self.leg.hangup().addErrback(
                lambda f: log.failure("ivr {name}: hangup failed", f, name=self.name))
        return outcome

    def _finish(self, result) -> None:
        if not isinstance(result, str):
            log.failure("ivr {name}: the session failed", result, name=self.name)
            result = f"error: {result.getErrorMessage()}"
        _stop(self._session_timer)
        _stop(self._step_timer)
        self.outcome = result
        log.info("ivr {name}: script {script} ended: {outcome}", name=self.name,
                 script=self.script.name, outcome=result)
        self._done.callback(result)

    # -- what steps wait with --------------------------------------------------------

    async def play(self, names: list[str], barge: bool = True, cap: float | None = None):
        """Play prompts as one playlist until it ends, a digit stops it (``barge``) or
        ``cap`` (default: the prompt limit) runs out."""
        if not names:
            return
        paths = self.prompts.paths(names)
        self._check()
        try:
            play_id = self.leg.play(paths)
        except LegGone:
            raise _CallerLeft() from None
        done = Deferred(lambda d: self._stop_playing())
        self._play_id, self._play_done, self._barge = play_id, done, barge
        timer = self.clock.callLater(cap or self.limits.prompt_limit, self._cap_play, done)
        try:
            await self._wait(done)
        finally:
            _stop(timer)
            if self._play_done is done:
                self._play_id = self._play_done = None

    async def next_digit(self, timeout: float) -> str | None:
        """The next digit (typed ahead or to come), or None after ``timeout`` seconds."""
        self._check()
        if self._typed:
            return self._typed.popleft()
        timer = None
        waiter = Deferred(lambda d: _stop(timer))
        self._digit_waiter = waiter
        timer = self.clock.callLater(timeout, self._digit_timeout, waiter)
        try:
            return await self._wait(waiter)
        finally:
            _stop(timer)
            if self._digit_waiter is waiter:
                self._digit_waiter = None

    def has_typed(self) -> bool:
        """Whether digits were typed ahead."""
        return bool(self._typed)

    def clear_typed(self) -> None:
        """Forget the digits typed ahead."""
        self._typed.clear()

    async def ask(self, call, *args):
        """Wait for a host call; its errors are raised here."""
        self._check()
        return await self._wait(maybeDeferred(call, *args))

    async def connect(self, number: str) -> str:
        """``host.connect(number)``: the session limit pauses, digits are dropped."""
        self._typed.clear()
        self._pause_session_clock()
        self._connecting = True
        try:
            return await self.ask(self.host.connect, number)
        finally:
            self._connecting = False
            if not self._gone:
                self._start_session_clock()

    async def _wait(self, d: Deferred):
        self._check()
        self._pending = d
        try:
            result = await d
        except CancelledError:
            self._check()
            raise
        finally:
            self._pending = None
        self._check()
        return result

    def _check(self) -> None:
        if self._gone:
            raise _CallerLeft()
        if self._whole_expired or self._step_expired:
            raise _Expired(self._whole_expired)

    def _cancel_pending(self) -> None:
        pending = self._pending
        if pending is not None and not pending.called:
            pending.cancel()

    # -- timers ----------------------------------------------------------------------

    def _start_session_clock(self) -> None:
        self._session_since = self.clock.seconds()
        self._session_timer = self.clock.callLater(max(self._session_left, 0.0),
                                                   self._expire_session)

    def _pause_session_clock(self) -> None:
        _stop(self._session_timer)
        self._session_left -= self.clock.seconds() - self._session_since

    def _expire_session(self) -> None:
        self._whole_expired = True
        self._cancel_pending()

    def _expire_step(self) -> None:
        self._step_expired = True
        self._cancel_pending()

    def _cap_play(self, done: Deferred) -> None:
        if self._play_done is done:
            log.warn("ivr {name}: a prompt ran into the prompt limit", name=self.name)
            self._stop_playing()
            self._fire_play()

    def _digit_timeout(self, waiter: Deferred) -> None:
        if self._digit_waiter is waiter:
            self._digit_waiter = None
            waiter.callback(None)

    # -- the leg's events --------------------------------------------------------------

    def legRinging(self, leg) -> None:
        """Nothing to do: the IVR runs on an answered leg."""

    def legAnswered(self, leg) -> None:
        """Nothing to do: the IVR runs on an answered leg."""

    def legDigit(self, leg, digit, method) -> None:
        """Keep the digit, stop a prompt it interrupts, hand it to a waiting collect."""
        if self._connecting or self._done is None or self._done.called:
            return
        if digit not in DIGITS:
            log.info("ivr {name}: ignoring DTMF {digit!r}", name=self.name, digit=digit)
            return
        self._typed.append(digit)
        if self._play_done is not None and self._barge:
            self._stop_playing()
            self._fire_play()
        waiter = self._digit_waiter
        if waiter is not None and self._typed:
            self._digit_waiter = None
            waiter.callback(self._typed.popleft())

    def legPlayDone(self, leg, play_id) -> None:
        """The prompt the script waits for has ended."""
        if self._play_done is not None and play_id == self._play_id:
            self._fire_play()

    def legEnded(self, leg, cause) -> None:
        """The caller is gone: tell ``on_ended`` and cancel whatever the script waits for."""
        first, self._gone, self.cause = not self._gone, True, cause
        if first:
            log.info("ivr {name}: the leg ended ({cause})", name=self.name,
                     cause=getattr(cause, "cause", cause))
            if self.on_ended is not None:
                try:
                    self.on_ended(cause)
                except Exception:
                    log.failure("ivr {name}: on_ended failed", name=self.name)
        if self._closing or self._done is None or self._done.called:
            return
        _stop(self._session_timer)
        _stop(self._step_timer)
        self._cancel_pending()

    def _fire_play(self) -> None:
        done, self._play_id, self._play_done = self._play_done, None, None
        if done is not None and not done.called:
            done.callback(None)

    def _stop_playing(self) -> None:
        if self._gone:
            return
        try:
            d = self.leg.stopPlaying()
        except LegGone:
            return
        d.addErrback(self._stop_failed)

    def _stop_failed(self, failure) -> None:
        if not failure.check(LegGone):
            log.failure("ivr {name}: stopping a prompt failed", failure, name=self.name)


def _stop(timer) -> None:
    if timer is not None and timer.active():
        timer.cancel()
