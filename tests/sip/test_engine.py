"""What a worker makes of its engine: its name, its setup limits, the calls its open-file
limit leaves room for, and how it raises that limit."""

import resource

from mizu.sip.engine import (
    BUILT_LIMITS,
    WHEEL_LIMITS,
    calls_allowed,
    engine_name,
    files_needed,
    limits_for,
    raise_file_limit,
    worker_calls,
)

INFINITY = resource.RLIM_INFINITY


class Limits:
    """A fake getrlimit/setrlimit pair that may refuse to raise."""

    def __init__(self, soft, hard, refuse=False):
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.set = []

    def get(self, which):
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def put(self, which, limits):
        assert which == resource.RLIMIT_NOFILE
        if self.refuse:
            raise ValueError("not allowed")
        self.set.append(limits)
        self.soft, self.hard = limits

    def raise_for(self, calls):
        return raise_file_limit(calls, self.get, self.put)


def test_engines_are_named_by_their_build():
    """A build with a local version names pjproject and the recipe, the wheel its release."""
    assert engine_name("2.17+mizu1", "2.17") == "pjproject-2.17+mizu1"
    assert engine_name("2.15.1.post1", "2.15.1") == "wheel-2.15.1"
    assert engine_name("", "2.15.1") == "wheel-2.15.1"


def test_setup_limits_follow_the_ioqueue():
    """The select() ioqueue (the wheel's 64 handles) keeps the wheel's budgets; epoll the
    built engine's, which let 300 INVITEs a second through."""
    assert limits_for("select") is WHEEL_LIMITS
    assert limits_for("epoll[0x3]") is BUILT_LIMITS
    assert WHEEL_LIMITS.incoming_rate == 25 and WHEEL_LIMITS.outgoing_rate == 15
    assert BUILT_LIMITS.incoming_rate >= 300 and BUILT_LIMITS.outgoing_rate > 15


def test_each_call_takes_two_files_above_a_reserve():
    """2 x calls + 64 files; a limit leaves room for (limit - 64) // 2 calls."""
    assert files_needed(1000) == 2064 and files_needed(4) == 72
    assert calls_allowed(2064) == 1000 and calls_allowed(1024) == 480
    assert calls_allowed(64) == 0 and calls_allowed(10) == 0
    assert calls_allowed(INFINITY) > 1_000_000


def test_the_share_is_capped_by_the_file_limit():
    """A worker configures pjsua with its share, or fewer when its files do not suffice."""
    assert worker_calls(500, 1024) == 480
    assert worker_calls(500, 20000) == 500
    assert worker_calls(4, 1024) == 4


def test_the_soft_limit_is_raised_to_the_hard_one():
    """1024 soft, 524288 hard: raised to the hard limit (TCP connections need files too)."""
    limits = Limits(1024, 524288)
    assert limits.raise_for(1000) == 524288
    assert limits.set == [(524288, 524288)]


def test_an_unlimited_hard_limit_is_raised_as_far_as_the_calls_need():
    """No hard limit: the soft one rises to 2 x calls + 64, and never falls."""
    limits = Limits(1024, INFINITY)
    assert limits.raise_for(1000) == 2064 and limits.set == [(2064, INFINITY)]
    limits = Limits(4096, INFINITY)
    assert limits.raise_for(1000) == 4096 and limits.set == []


def test_a_limit_that_cannot_be_raised_is_reported_as_it_is():
    """soft = hard = 1024: nothing to raise, and 1000 calls shrink to 480."""
    limits = Limits(1024, 1024)
    assert limits.raise_for(1000) == 1024 and limits.set == []
    assert worker_calls(1000, 1024) == 480
    refusing = Limits(256, 4096, refuse=True)
    assert refusing.raise_for(1000) == 256
    assert Limits(INFINITY, INFINITY).raise_for(1000) == INFINITY
