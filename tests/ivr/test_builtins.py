"""The built-in scripts ``callback`` and ``callingcard``, step by step, on a fake leg."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from mizu.errors import NoRoute, StoreError
from mizu.ivr.session import IIvrHost
from tests.ivr.rig import PROMPTS, Rig

MINUTES_10 = ("you-have", "number-10", "minutes")


def test_the_callback_happy_path_step_by_step():
    """PIN, credit check, destination by digits and '#', "you have 10 minutes", connecting,
    the call, goodbye, hangup; the outcome is connect's."""
    rig = Rig("callback")
    assert verifyObject(IIvrHost, rig.host)
    rig.run()
    assert rig.plays() == [("enter-pin",)]
    rig.ends()
    rig.press("1234#")
    assert rig.host.calls[:2] == [("pin", "1234"), ("credit",)]
    assert rig.last_play() == ("enter-destination",)
    rig.ends()
    rig.press("4930123#")
    assert rig.host.calls[-1] == ("max_seconds", "4930123")
    assert rig.last_play() == MINUTES_10
    rig.ends()
    assert rig.last_play() == ("connecting",)
    assert rig.host.connecting is None
    rig.ends()
    assert rig.host.calls[-1] == ("connect", "4930123")
    assert rig.outcome is None and not rig.hung_up()
    rig.host.connecting.callback("completed")
    assert rig.last_play() == ("goodbye",) and not rig.hung_up()
    rig.ends()
    assert rig.hung_up() and rig.outcome == "completed"
    assert rig.session.destination == "4930123" and rig.session.max_seconds == 600
    assert rig.ended and rig.ended[0].by == "local"
    assert rig.our_timers() == []


def test_the_callingcard_script_welcomes_first_then_runs_the_callback_steps():
    """callingcard: welcome, then the PIN and the rest as in callback."""
    rig = Rig("callingcard").run()
    assert rig.plays() == [("welcome",)]
    rig.ends()
    assert rig.last_play() == ("enter-pin",)
    rig.ends()
    rig.press("1234#")
    rig.ends()
    rig.press("4930123#")
    rig.ends()
    rig.ends()
    rig.host.connecting.callback("busy")
    assert rig.plays()[-1] == ("call-failed",)
    rig.ends()
    rig.ends()
    assert rig.plays()[-1] == ("goodbye",) and rig.hung_up() and rig.outcome == "busy"


def test_an_authenticated_caller_is_not_asked_the_pin():
    """authenticated: the first prompt is the destination; no PIN is checked."""
    rig = Rig("callback", authenticated=True).run()
    assert rig.plays() == [("enter-destination",)]
    assert "pin" not in rig.host.names() and rig.host.names() == ["credit"]


def test_a_known_destination_is_not_asked_for():
    """B known: after the PIN the session rates B at once."""
    rig = Rig("callback", destination="4930999").run()
    rig.ends()
    rig.press("1234#")
    assert rig.host.calls[-1] == ("max_seconds", "4930999")
    assert rig.plays() == [("enter-pin",), MINUTES_10]
    rig.ends()
    rig.ends()
    assert rig.host.calls[-1] == ("connect", "4930999")


@pytest.mark.parametrize("wrong", [1, 2])
def test_a_wrong_pin_is_asked_again_and_a_good_one_goes_on(wrong):
    """Each wrong PIN plays wrong-pin and asks again; the right one then passes."""
    rig = Rig("callback").run()
    rig.ends()
    for _ in range(wrong):
        rig.press("9999#")
        assert rig.last_play() == ("wrong-pin", "enter-pin")
        rig.ends()
    rig.press("1234#")
    assert rig.host.names() == ["pin"] * (wrong + 1) + ["credit"]
    assert rig.last_play() == ("enter-destination",) and not rig.hung_up()


def test_three_wrong_pins_end_the_call_auth_failed():
    """maxivrauthfail 3: exactly 3 PIN prompts, then wrong-pin, goodbye, the leg hung up."""
    rig = Rig("callback").run()
    for _ in range(3):
        rig.ends()
        rig.press("9999#")
    assert rig.host.names() == ["pin"] * 3
    assert sum(play.count("enter-pin") for play in rig.plays()) == 3
    assert rig.last_play() == ("wrong-pin", "goodbye") and not rig.hung_up()
    rig.ends()
    assert rig.hung_up() and rig.outcome == "auth_failed"


def test_typed_ahead_digits_skip_the_prompts_they_answer():
    """PIN and destination typed in one go during enter-pin while the PIN is checked: the
    prompt stops, the PIN is taken, and enter-destination is never played."""
    rig = Rig("callback")
    rig.host.hold.add("authenticate_pin")
    rig.run()
    rig.press("1234#4930123#")
    assert ("stop",) in rig.leg.actions and rig.host.calls == [("pin", "1234")]
    rig.host.release("authenticate_pin")
    assert rig.host.calls == [("pin", "1234"), ("credit",), ("max_seconds", "4930123")]
    assert rig.plays() == [("enter-pin",), MINUTES_10]


def test_digits_arriving_during_a_prompt_stop_it_and_count():
    """Barge-in on enter-destination: the first digit stops the prompt and is part of B."""
    rig = Rig("callback", authenticated=True).run()
    assert rig.plays() == [("enter-destination",)]
    rig.press("4")
    assert rig.actions()[-1] == "stop"
    rig.press("930123#")
    assert rig.host.calls[-1] == ("max_seconds", "4930123")


def test_digits_typed_during_the_welcome_stop_it_and_answer_the_pin():
    """callingcard: a digit stops welcome, the PIN prompt is skipped, the digits count."""
    rig = Rig("callingcard").run()
    rig.press("12")
    assert rig.actions() == ["play", "stop"]
    rig.press("34#")
    assert rig.host.calls[0] == ("pin", "1234")
    assert rig.plays() == [("welcome",), ("enter-destination",)]


def test_no_credit_ends_the_call():
    """check_credit says no: insufficient-credit, goodbye, hang up; B is never asked for."""
    rig = Rig("callback", authenticated=True, credit=False).run()
    assert rig.plays() == [("insufficient-credit", "goodbye")]
    rig.ends()
    assert rig.hung_up() and rig.outcome == "no_credit"


def test_too_little_credit_for_the_destination_ends_the_call():
    """max_seconds 0: insufficient-credit, goodbye, no_credit; nothing is dialled."""
    rig = Rig("callback", authenticated=True, seconds=0).run()
    rig.ends()
    rig.press("4930123#")
    assert rig.last_play() == ("insufficient-credit", "goodbye")
    rig.ends()
    assert rig.outcome == "no_credit" and "connect" not in rig.host.names()


def test_no_route_for_the_destination_ends_the_call():
    """max_seconds fails with NoRoute: call-failed, goodbye, outcome no_route."""
    rig = Rig("callback", authenticated=True)
    rig.host.fail["max_seconds"] = NoRoute("no rate for 999")
    rig.run()
    rig.ends()
    rig.press("999#")
    assert rig.last_play() == ("call-failed", "goodbye")
    rig.ends()
    assert rig.hung_up() and rig.outcome == "no_route"


def test_a_host_error_plays_call_failed_and_hangs_up():
    """A StoreError from the host: call-failed, hangup, 'error: <what>'."""
    rig = Rig("callback", authenticated=True)
    rig.host.fail["check_credit"] = StoreError("database down")
    rig.run()
    assert rig.plays() == [("call-failed",)]
    rig.ends()
    assert rig.hung_up() and rig.outcome == "error: database down"


def test_the_minutes_are_said_with_the_right_words():
    """61 s: "1 minute"; 45 s: "45 seconds"; 4530 s: "75 minutes"."""
    assert PROMPTS.minutes(61) == ["you-have", "digit-1", "minute"]
    assert PROMPTS.minutes(45) == ["you-have", "number-40", "digit-5", "seconds"]
    rig = Rig("callback", authenticated=True, seconds=4530).run()
    rig.ends()
    rig.press("4930123#")
    assert rig.last_play() == ("you-have", "number-70", "digit-5", "minutes")
