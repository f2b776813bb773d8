"""Bans by source address (mizu.bans) on a fake clock."""

from twisted.internet.task import Clock

from mizu.bans import Bans, address_key


def bans(**settings):
    """A ``Bans`` with ``settings`` on a fresh fake clock, and the clock."""
    clock = Clock()
    return Bans(clock, **settings), clock


def fail(b, n, kind="console", host="192.0.2.1"):
    """``n`` failures; the verdict of each."""
    return [b.failed(kind, host) for _ in range(n)]


def test_threshold_bans_on_the_nth_failure():
    """The failures-th failure within the window bans the address, not one earlier."""
    b, _ = bans(failures=3, window=60, duration=900)
    assert fail(b, 3) == [False, False, True]
    assert b.is_banned("console", "192.0.2.1")
    assert not b.is_banned("console", "192.0.2.2")
    assert fail(b, 1) == [True]  # failing while banned keeps it banned


def test_failures_outside_the_window_do_not_add_up():
    """Only failures within ``window`` seconds of the latest one count."""
    b, clock = bans(failures=3, window=60, duration=900)
    fail(b, 2)
    clock.advance(61)
    assert fail(b, 2) == [False, False]
    clock.advance(30)
    assert fail(b, 1) == [True]


def test_ban_expires_after_its_duration():
    """A ban ends after ``duration`` seconds; the count starts afresh afterwards."""
    b, clock = bans(failures=2, window=60, duration=900)
    fail(b, 2)
    clock.advance(899)
    assert b.is_banned("console", "192.0.2.1")
    assert [(ban.kind, ban.address, ban.until) for ban in b.active()] == [
        ("console", "192.0.2.1", 900)]
    clock.advance(1)
    assert not b.is_banned("console", "192.0.2.1") and b.active() == []
    assert fail(b, 1) == [False]


def test_kinds_are_counted_apart():
    """SIP and console failures from one address neither add up nor ban each other."""
    b, _ = bans(failures=2)
    assert fail(b, 1, "sip") + fail(b, 1, "console") == [False, False]
    assert fail(b, 1, "sip") == [True]
    assert b.is_banned("sip", "192.0.2.1") and not b.is_banned("console", "192.0.2.1")


def test_ipv6_counts_as_its_64():
    """Every address in one IPv6 /64 counts as one; a v4-mapped address as its IPv4 one."""
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    assert address_key("::ffff:192.0.2.1") == address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("unix") == "unix"
    b, _ = bans(failures=2)
    assert fail(b, 1, host="2001:db8::1") + fail(b, 1, host="2001:db8::2") == [False, True]
    assert b.is_banned("console", "2001:db8::abcd")
    assert not b.is_banned("console", "2001:db8:0:1::1")


def test_clear_one_address_or_all():
    """clear(host) lifts that address's bans (every kind); clear() lifts all and forgets
    the counts too."""
    b, _ = bans(failures=2)
    fail(b, 2, "console", "192.0.2.1")
    fail(b, 2, "sip", "192.0.2.1")
    fail(b, 2, "console", "192.0.2.2")
    fail(b, 1, "console", "192.0.2.3")
    lifted = b.clear("192.0.2.1")
    assert sorted((ban.kind, ban.address) for ban in lifted) == [
        ("console", "192.0.2.1"), ("sip", "192.0.2.1")]
    assert not b.is_banned("console", "192.0.2.1") and b.is_banned("console", "192.0.2.2")
    assert [ban.address for ban in b.clear()] == ["192.0.2.2"]
    assert b.active() == []
    assert fail(b, 1, "console", "192.0.2.3") == [False]  # the earlier failure is forgotten


def test_failures_zero_turns_banning_off():
    """failures = 0: no number of failures bans anything."""
    b, _ = bans(failures=0)
    assert not any(fail(b, 1000))
    assert b.active() == []


def test_configure_keeps_bans_in_force():
    """New thresholds apply to later failures; a ban already in force keeps its end."""
    b, clock = bans(failures=2, duration=900)
    fail(b, 2)
    b.configure(failures=0, window=60, duration=10)
    clock.advance(100)
    assert b.is_banned("console", "192.0.2.1")
    assert not any(fail(b, 10, host="192.0.2.2"))


def test_tracking_is_bounded():
    """At most ``max_tracked`` addresses are counted at once; the least recently failed
    are forgotten first."""
    b, _ = bans(failures=2, max_tracked=3)
    for n in range(1, 6):
        fail(b, 1, host=f"192.0.2.{n}")
    assert len(b._recent) == 3
    assert fail(b, 1, host="192.0.2.1") == [False]  # forgotten: counts from one again
    assert fail(b, 1, host="192.0.2.5") == [True]
