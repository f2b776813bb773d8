"""A test rig for IVR sessions: a FakeLeg on a task.Clock and a fake IIvrHost."""

from __future__ import annotations

import os
from decimal import Decimal

from twisted.internet import defer, task
from zope.interface import implementer

from mizu.ivr.prompts import Prompts
from mizu.ivr.script import load_scripts, parse
from mizu.ivr.session import IIvrHost, IvrLimits, IvrSession
from mizu.sip.fake import FakeTelephony

PROMPTS = Prompts()
SCRIPTS = load_scripts(None, PROMPTS)


@implementer(IIvrHost)
class FakeHost:
    """Answers the IVR's questions from its attributes and records every call."""

    def __init__(self, authenticated=False, destination="", pin="1234", ani=False,
                 credit=True, balance=Decimal("12.34"), seconds=600):
        self.authenticated, self.destination = authenticated, destination
        self.pin, self.ani, self.credit = pin, ani, credit
        self.balance_value, self.seconds = balance, seconds
        self.calls: list[tuple] = []
        self.connecting: defer.Deferred | None = None
        self.cancelled = False
        self.fail: dict[str, Exception] = {}   # method name -> error to fail with
        self.hang: set[str] = set()            # method names that never answer
        self.hold: set[str] = set()            # method names that answer on release()
        self.held: dict[str, tuple[defer.Deferred, object]] = {}

    def _answer(self, name, value):
        if name in self.fail:
            return defer.fail(self.fail[name])
        if name in self.hang:
            return defer.Deferred(lambda d: self.calls.append(("cancelled", name)))
        if name in self.hold:
            self.held[name] = (defer.Deferred(), value)
            return self.held[name][0]
        return defer.succeed(value)

    def authenticate_pin(self, pin):
        self.calls.append(("pin", pin))
        good = pin == self.pin
        if good and "authenticate_pin" not in self.fail:
            self.authenticated = True
        return self._answer("authenticate_pin", good)

    def authenticate_ani(self):
        self.calls.append(("ani",))
        if self.ani:
            self.authenticated = True
        return self._answer("authenticate_ani", self.ani)

    def balance(self):
        self.calls.append(("balance",))
        return self._answer("balance", self.balance_value)

    def check_credit(self):
        self.calls.append(("credit",))
        return self._answer("check_credit", self.credit)

    def max_seconds(self, number):
        self.calls.append(("max_seconds", number))
        return self._answer("max_seconds", self.seconds)

    def connect(self, number):
        self.calls.append(("connect", number))
        if "connect" in self.fail:
            return defer.fail(self.fail["connect"])

        def cancel(d):
            self.cancelled = True

        self.connecting = defer.Deferred(cancel)
        return self.connecting

    def release(self, name):
        """The held answer of ``name`` arrives."""
        d, value = self.held.pop(name)
        d.callback(value)

    def names(self):
        return [c[0] for c in self.calls]


class Rig:
    """One answered A leg, a host and a session running ``script`` on them."""

    def __init__(self, script="callback", limits=None, **host):
        self.clock = task.Clock()
        self.telephony = FakeTelephony(clock=self.clock)
        self.leg = self.telephony.originate("sip:a@fake.invalid", "4930", 60, None).result
        self.leg.far_answers()
        self.host = FakeHost(**host)
        if isinstance(script, str) and script in SCRIPTS:
            script = SCRIPTS[script]
        elif isinstance(script, str):
            script = parse(script, "test.ivr", PROMPTS)
        self.ended = []
        self.session = IvrSession(self.leg, script, self.host, PROMPTS, self.clock,
                                  limits or IvrLimits(), name="test",
                                  on_ended=self.ended.append)
        self.outcomes = []

    def run(self):
        self.session.run().addCallback(self.outcomes.append)
        return self

    @property
    def outcome(self):
        return self.outcomes[0] if self.outcomes else None

    def plays(self):
        """Every playlist the session played, as tuples of prompt names."""
        return [tuple(os.path.basename(p)[:-4] for p in a[2])
                for a in self.leg.actions if a[0] == "play"]

    def last_play(self):
        plays = self.plays()
        return plays[-1] if plays else None

    def actions(self):
        return [a[0] for a in self.leg.actions]

    def ends(self):
        """The prompt now playing ends."""
        self.leg.prompt_ends()

    def press(self, digits):
        self.leg.far_presses(digits)

    def hung_up(self):
        return ("hangup", None) in self.leg.actions

    def our_timers(self):
        """Timers left on the clock that are not the fake's own prompt ends."""
        return [c for c in self.clock.getDelayedCalls()
                if getattr(c.func, "__name__", "") != "_play_ends"]
