"""Reassembling concatenated SMS: order, duplicates, who sent what, and every memory bound."""

import pytest
from twisted.internet.task import Clock

from mizu.sms.coding import CodingError, Part
from mizu.sms.concat import MAX_CHARS, MAX_PARTS, Reassembly


def part(text, reference=7, total=3, seq=1):
    """A part of a concatenated message."""
    return Part(text, (reference, total, seq))


def test_single_messages_pass_straight_through():
    """A text without concatenation, or one of one part, is whole at once and keeps nothing."""
    parts = Reassembly(Clock())
    assert parts.add("447700900001", Part("cb 4420111", None)) == "cb 4420111"
    assert parts.add("447700900001", part("balance", total=1, seq=1)) == "balance"
    assert parts.pending() == 0


@pytest.mark.parametrize("order", [(1, 2, 3), (3, 2, 1), (2, 3, 1), (3, 1, 2)])
def test_parts_join_in_sequence_order_whatever_the_arrival(order):
    """The whole text comes back with the last part to arrive, joined by part number."""
    parts = Reassembly(Clock())
    texts = {1: "alice ", 2: "s3cr3t ", 3: "4917011"}
    results = [parts.add("447700900001", part(texts[n], seq=n)) for n in order]
    assert results == [None, None, "alice s3cr3t 4917011"]
    assert parts.pending() == 0


def test_duplicates_are_ignored_and_the_first_copy_wins():
    """A repeated part changes nothing; the text is the first copy's."""
    parts = Reassembly(Clock())
    assert parts.add("a", part("cb ", total=2, seq=1)) is None
    assert parts.add("a", part("XX ", total=2, seq=1)) is None
    assert parts.pending() == 1
    assert parts.add("a", part("4420111", total=2, seq=2)) == "cb 4420111"


def test_sender_reference_and_total_keep_messages_apart():
    """Parts only join when sender, reference and total all match."""
    parts = Reassembly(Clock())
    assert parts.add("a", part("a1 ", reference=1, total=2, seq=1)) is None
    assert parts.add("b", part("b2", reference=1, total=2, seq=2)) is None
    assert parts.add("a", part("x2", reference=2, total=2, seq=2)) is None
    assert parts.add("a", part("y2", reference=1, total=3, seq=2)) is None
    assert parts.pending() == 4
    assert parts.add("a", part("a2", reference=1, total=2, seq=2)) == "a1 a2"
    assert parts.add("b", part("b1 ", reference=1, total=2, seq=1)) == "b1 b2"
    assert parts.pending() == 2


def test_a_completed_message_is_forgotten():
    """After completion the same reference starts afresh (a new message, or a late copy)."""
    parts = Reassembly(Clock())
    parts.add("a", part("one ", total=2, seq=1))
    assert parts.add("a", part("two", total=2, seq=2)) == "one two"
    assert parts.add("a", part("late", total=2, seq=2)) is None
    assert parts.add("a", part("new ", total=2, seq=1)) == "new late"


def test_incomplete_messages_time_out_after_their_first_part():
    """A message is forgotten `timeout` seconds after its first part, later parts or not."""
    clock = Clock()
    parts = Reassembly(clock, timeout=120.0)
    parts.add("a", part("1", seq=1))
    clock.advance(119.9)
    parts.add("a", part("2", seq=2))
    assert parts.pending() == 1
    clock.advance(0.1)
    assert parts.pending() == 0
    assert parts.add("a", part("3", seq=3)) is None   # starts a new message: 1 and 2 are gone
    assert parts.pending() == 1


def test_a_message_completed_just_in_time():
    """The last part just before the deadline still completes the message."""
    clock = Clock()
    parts = Reassembly(clock, timeout=10.0)
    parts.add("a", part("x", total=2, seq=1))
    clock.advance(9.999)
    assert parts.add("a", part("y", total=2, seq=2)) == "xy"


def test_expiry_is_checked_on_add():
    """Timed-out messages are dropped when a later part arrives, oldest first, others kept."""
    clock = Clock()
    parts = Reassembly(clock, timeout=60.0)
    parts.add("a", part("a", seq=1))
    clock.advance(30)
    parts.add("b", part("b", seq=1))
    clock.advance(30)
    parts.add("c", part("c", seq=1))            # "a" is due now and goes
    assert parts.pending() == 2
    assert parts.add("a", part("a2", seq=2)) is None
    assert parts.add("a", part("a3", seq=3)) is None   # not "a" + ... : part 1 was forgotten
    assert parts.add("b", part("b2", seq=2)) is None
    assert parts.add("b", part("b3", seq=3)) == "bb2b3"


def test_a_flood_of_first_parts_keeps_at_most_max_pending():
    """Beyond max_pending incomplete messages, the oldest is forgotten first."""
    parts = Reassembly(Clock(), max_pending=3)
    for sender in "abcd":
        parts.add(sender, part(sender, total=2, seq=1))
    assert parts.pending() == 3
    assert parts.add("a", part("2", total=2, seq=2)) is None          # "a" was forgotten
    assert parts.pending() == 3                                       # and "b" now too
    assert parts.add("c", part("2", total=2, seq=2)) == "c2"
    assert parts.add("d", part("2", total=2, seq=2)) == "d2"
    assert parts.add("b", part("2", total=2, seq=2)) is None


def test_more_than_max_parts_is_refused_and_kept_nowhere():
    """A message of more than 16 parts raises for each part and stores nothing."""
    parts = Reassembly(Clock())
    assert MAX_PARTS == 16
    parts.add("a", part("x", total=16, seq=16))
    for seq in (1, 17):
        with pytest.raises(CodingError, match="17 parts, at most 16"):
            parts.add("a", part("x", total=17, seq=seq))
    assert parts.pending() == 1


@pytest.mark.parametrize("concat", [(1, 2, 0), (1, 2, 3), (1, 0, 0)])
def test_impossible_part_numbers_are_refused(concat):
    """A Part that did not come from decode_short_message is still checked."""
    with pytest.raises(CodingError, match="bad concatenation"):
        Reassembly(Clock()).add("a", Part("x", concat))


def test_a_message_longer_than_max_chars_is_refused_once():
    """Going over 2,000 characters raises once; the message's other parts are swallowed."""
    parts = Reassembly(Clock(), timeout=60.0)
    assert MAX_CHARS == 2_000
    assert parts.add("a", part("x" * 1000, total=3, seq=1)) is None
    assert parts.add("a", part("x" * 999, total=3, seq=2)) is None
    with pytest.raises(CodingError, match="more than 2000 characters"):
        parts.add("a", part("xx", total=3, seq=3))
    assert parts.add("a", part("x", total=3, seq=3)) is None
    assert parts.add("a", part("x", total=3, seq=1)) is None
    assert parts.pending() == 1


def test_a_refused_message_is_forgotten_like_any_other():
    """The swallowing ends with the timeout; the same reference then works again."""
    clock = Clock()
    parts = Reassembly(clock, timeout=60.0)
    with pytest.raises(CodingError):
        parts.add("a", part("x" * 2001, total=2, seq=1))
    clock.advance(60)
    assert parts.add("a", part("cb ", total=2, seq=1)) is None
    assert parts.add("a", part("4420111", total=2, seq=2)) == "cb 4420111"


def test_exactly_max_chars_is_accepted():
    """The bound is inclusive."""
    parts = Reassembly(Clock())
    parts.add("a", part("x" * 1000, total=2, seq=1))
    assert parts.add("a", part("y" * 1000, total=2, seq=2)) == "x" * 1000 + "y" * 1000
