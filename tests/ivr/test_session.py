"""IvrSession timing and ends: digit timeouts, hangups at every stage, limits, and the
steps the built-ins do not use (ani, balance, play options, collect options)."""

from __future__ import annotations

from decimal import Decimal

from mizu.errors import LegGone, NoRoute
from mizu.ivr.prompts import Prompts
from mizu.ivr.session import IvrLimits
from mizu.settings import Settings
from mizu.sip.fake import PLAY_SECONDS
from tests.ivr.rig import Rig


def test_the_first_digit_timeout_is_10_s_from_the_end_of_the_prompt():
    """No digit: the prompt is asked again 10 s after it ended, not before; three silent
    prompts in all, then goodbye and 'timeout'."""
    rig = Rig("callback").run()
    rig.clock.advance(PLAY_SECONDS)   # enter-pin ends by itself
    rig.clock.advance(9.99)
    assert rig.plays() == [("enter-pin",)]
    rig.clock.advance(0.02)
    assert rig.plays() == [("enter-pin",)] * 2
    rig.clock.advance(PLAY_SECONDS)
    rig.clock.advance(10.01)
    assert rig.plays() == [("enter-pin",)] * 3
    rig.clock.advance(PLAY_SECONDS)
    rig.clock.advance(10.01)
    assert rig.last_play() == ("goodbye",) and rig.host.calls == []
    rig.clock.advance(PLAY_SECONDS)
    assert rig.hung_up() and rig.outcome == "timeout"
    assert rig.our_timers() == []


def test_the_first_digit_wait_starts_at_once_without_a_prompt():
    """prompt=none: the 10 s run from the start of the step."""
    rig = Rig("destination prompt=none tries=1\nhangup", authenticated=True).run()
    assert rig.plays() == []
    rig.clock.advance(9.99)
    assert rig.plays() == []
    rig.clock.advance(0.02)
    assert rig.plays() == [("goodbye",)]


def test_the_inter_digit_timeout_of_5_s_ends_the_entry():
    """Digits without '#': the entry ends 5 s after the last digit, not before."""
    rig = Rig("callback").run()
    rig.ends()
    rig.press("12")
    rig.clock.advance(3)
    rig.press("34")
    rig.clock.advance(4.99)
    assert rig.host.calls == []
    rig.clock.advance(0.02)
    assert rig.host.calls[0] == ("pin", "1234")


def test_star_clears_the_digits_entered_so_far():
    """'*' starts the entry again: "98*1234#" is the PIN 1234."""
    rig = Rig("callback").run()
    rig.ends()
    rig.press("98*1234#")
    assert rig.host.calls[0] == ("pin", "1234")


def test_the_caller_hanging_up_during_a_prompt_cancels_everything():
    """Hangup during enter-pin: 'caller_hangup', no hangup of ours, no timer left, and
    on_ended hears the remote cause."""
    rig = Rig("callback").run()
    rig.leg.far_hangs_up()
    assert rig.outcome == "caller_hangup" and not rig.hung_up()
    assert rig.our_timers() == [] and rig.ended[0].by == "remote"
    rig.clock.advance(100)
    assert rig.plays() == [("enter-pin",)]


def test_the_caller_hanging_up_during_collect_stops_the_digit_timers():
    """Hangup after two digits: the PIN is never checked, no timer is left."""
    rig = Rig("callback").run()
    rig.ends()
    rig.press("12")
    rig.leg.far_hangs_up()
    assert rig.outcome == "caller_hangup" and rig.our_timers() == []
    rig.clock.advance(100)
    assert rig.host.calls == []


def test_the_caller_hanging_up_during_connect_cancels_host_connect():
    """Hangup while B is connected: host.connect's Deferred is cancelled, 'caller_hangup'."""
    rig = Rig("callback", authenticated=True, destination="4930999").run()
    rig.ends()
    rig.ends()
    assert rig.host.connecting is not None
    rig.leg.far_hangs_up()
    assert rig.host.cancelled and rig.outcome == "caller_hangup" and not rig.hung_up()
    assert rig.our_timers() == []


def test_a_host_answering_the_cancel_of_connect_still_ends_caller_hangup():
    """host.connect's canceller fires an outcome instead of failing: the session still
    stops and fires 'caller_hangup', playing nothing more."""
    rig = Rig("callback", authenticated=True, destination="4930999")
    connect = rig.host.connect

    def answering_connect(number):
        d = connect(number)
        d._canceller = lambda d: d.callback("completed")
        return d

    rig.host.connect = answering_connect
    rig.run()
    rig.ends()
    rig.ends()
    plays = rig.plays()
    rig.leg.far_hangs_up()
    assert rig.outcome == "caller_hangup" and rig.plays() == plays


def test_the_caller_hanging_up_during_a_host_call_cancels_it():
    """Hangup while the PIN is checked: that Deferred is cancelled."""
    rig = Rig("callback")
    rig.host.hang.add("authenticate_pin")
    rig.run()
    rig.ends()
    rig.press("1234#")
    rig.leg.far_hangs_up()
    assert ("cancelled", "authenticate_pin") in rig.host.calls
    assert rig.outcome == "caller_hangup"


def test_a_leg_ending_while_the_session_is_busy_is_noticed():
    """The leg ends inside a host call that then answers: the session stops there."""
    rig = Rig("callback", authenticated=True)
    check = rig.host.check_credit

    def check_and_hang_up():
        rig.leg.far_hangs_up()
        return check()

    rig.host.check_credit = check_and_hang_up
    rig.run()
    assert rig.outcome == "caller_hangup" and rig.plays() == []


def test_leg_gone_on_play_means_the_caller_left():
    """leg.play failing with LegGone ends the session as 'caller_hangup'."""
    rig = Rig("callback")

    def gone(paths):
        raise LegGone("gone")

    rig.leg.play = gone
    rig.run()
    assert rig.outcome == "caller_hangup"


def test_a_leg_that_ended_before_run_is_not_touched():
    """run() on an ended leg: 'caller_hangup' at once, nothing played or hung up."""
    rig = Rig("callback")
    rig.leg.far_hangs_up()
    rig.run()
    assert rig.outcome == "caller_hangup" and rig.leg.actions == []
    assert rig.our_timers() == []


def test_the_session_limit_hangs_up_at_once():
    """session_limit 25: a caller who keeps typing '*' is cut at 25 s, without goodbye."""
    rig = Rig("callback", limits=IvrLimits(session_limit=25)).run()
    rig.ends()
    for _ in range(12):
        rig.clock.advance(2)
        rig.press("*")
    assert rig.outcome is None
    rig.clock.advance(1.01)
    assert rig.outcome == "timeout" and rig.hung_up()
    assert rig.plays() == [("enter-pin",)] and rig.our_timers() == []


def test_the_session_limit_pauses_while_connected():
    """A connected call longer than the session limit is not cut by the IVR."""
    rig = Rig("callback", authenticated=True, destination="4930999",
              limits=IvrLimits(session_limit=30)).run()
    rig.ends()
    rig.ends()
    rig.clock.advance(4000)
    assert rig.outcome is None and not rig.host.cancelled
    rig.host.connecting.callback("completed")
    rig.ends()
    assert rig.outcome == "completed"


def test_a_host_call_that_never_answers_is_cut_by_the_step_timeout():
    """check_credit hangs: after the step's 300 s it is cancelled, goodbye, 'timeout'."""
    rig = Rig("callback", authenticated=True)
    rig.host.hang.add("check_credit")
    rig.run()
    rig.clock.advance(299.9)
    assert rig.plays() == []
    rig.clock.advance(0.2)
    assert ("cancelled", "check_credit") in rig.host.calls
    assert rig.plays() == [("goodbye",)]
    rig.ends()
    assert rig.outcome == "timeout" and rig.hung_up()


def test_a_step_timeout_option_overrides_the_default():
    """destination timeout=12: cut at 12 s though the digit timeouts would go on."""
    rig = Rig("destination timeout=12\nhangup", authenticated=True).run()
    rig.ends()
    rig.clock.advance(11.9)
    rig.press("1")
    rig.clock.advance(0.2)
    assert rig.last_play() == ("goodbye",) and rig.host.calls == []


def test_a_prompt_is_capped_by_its_timeout():
    """play timeout=0.1: the play is stopped at 0.1 s and the script goes on."""
    rig = Rig("play welcome timeout=0.1\nhangup goodbye").run()
    rig.clock.advance(0.11)
    assert rig.actions() == ["play", "stop", "play"]
    assert rig.last_play() == ("goodbye",)


def test_digits_during_an_unbargeable_play_are_kept_for_the_next_collect():
    """barge=no: the welcome plays on, the digits answer the PIN without its prompt."""
    rig = Rig("play welcome barge=no\npin\nhangup").run()
    rig.press("1234#")
    assert "stop" not in rig.actions() and rig.host.calls == []
    rig.ends()
    assert rig.host.calls == [("pin", "1234")]
    assert rig.plays() == [("welcome",)]


def test_pin_tries_limits_the_attempts():
    """pin tries=2: two wrong PINs end the call."""
    rig = Rig("pin tries=2\nhangup").run()
    for _ in range(2):
        rig.ends()
        rig.press("0000#")
    rig.ends()
    assert rig.outcome == "auth_failed" and rig.host.names() == ["pin", "pin"]


def test_max_auth_fail_comes_from_the_settings():
    """maxivrauthfail 1: a single wrong PIN ends the call."""
    limits = IvrLimits.from_settings(Settings(maxivrauthfail=1))
    rig = Rig("callback", limits=limits).run()
    rig.ends()
    rig.press("0000#")
    rig.ends()
    assert rig.outcome == "auth_failed"


def test_ani_authenticates_silently_and_skips_the_pin():
    """ani succeeding: nothing is played, the PIN is not asked."""
    rig = Rig("ani\npin\nhangup goodbye", ani=True).run()
    assert rig.host.names() == ["ani"] and rig.plays() == [("goodbye",)]


def test_ani_failing_goes_on_to_the_pin():
    """ani failing: the script goes on with the PIN."""
    rig = Rig("ani\npin\nhangup goodbye").run()
    assert rig.host.names() == ["ani"] and rig.plays() == [("enter-pin",)]


def test_balance_says_the_amount():
    """balance 12.34: your-balance-is number-12 point digit-3 digit-4."""
    rig = Rig("balance\nhangup", authenticated=True, balance=Decimal("12.3456")).run()
    assert rig.plays() == [("your-balance-is", "number-12", "point", "digit-3", "digit-4")]


def test_too_short_destinations_end_with_no_destination():
    """min=3: "12#" three times asks again, then goodbye and 'no_destination'."""
    rig = Rig("destination min=3\nhangup", authenticated=True).run()
    for _ in range(3):
        rig.ends()
        rig.press("12#")
    assert rig.plays() == [("enter-destination",)] * 3 + [("goodbye",)]
    rig.ends()
    assert rig.outcome == "no_destination"


def test_max_digits_end_the_entry_and_the_rest_is_typed_ahead():
    """max=4: "12345" gives 1234 at the 4th digit, without '#'; the 5 goes to the next
    collect (stopping its prompt)."""
    rig = Rig("destination min=1 max=4\npin\nhangup", authenticated=True).run()
    rig.host.authenticated = False
    rig.ends()
    rig.press("1234")
    assert rig.session.destination == "1234"
    assert rig.plays() == [("enter-destination",), ("enter-pin",)]
    rig.press("5#")
    assert rig.actions()[2] == "stop"
    assert rig.host.calls == [("pin", "5")]


def test_connect_without_a_destination_fails():
    """connect with no B known: call-failed, goodbye, 'no_destination'."""
    rig = Rig("connect\nhangup", authenticated=True).run()
    assert rig.plays() == [("call-failed", "goodbye")]


def test_connect_failing_with_no_route_goes_on():
    """host.connect errbacks NoRoute: call-failed, then the script's goodbye."""
    rig = Rig("callback", authenticated=True, destination="999")
    rig.host.fail["connect"] = NoRoute("none")
    rig.run()
    rig.ends()
    rig.ends()
    assert rig.last_play() == ("call-failed",)
    rig.ends()
    rig.ends()
    assert rig.outcome == "no_route"


def test_digits_during_connect_are_dropped():
    """DTMF while B is connected is not kept for later steps."""
    rig = Rig("destination\nconnect\ndestination\nhangup", authenticated=True).run()
    rig.ends()
    rig.press("4930123#")
    rig.ends()
    rig.press("555#")
    rig.host.connecting.callback("cut")
    assert rig.session.connect_outcome == "cut" and rig.plays()[-1] == ("connecting",)
    rig.ends()
    assert rig.outcome == "cut" and rig.hung_up()


def test_a_missing_prompt_at_run_time_is_an_error():
    """A prompt file gone after loading: call-failed, the leg hung up, 'error: ...'."""

    class Partial(Prompts):
        def find(self, name):
            return None if name == "enter-pin" else super().find(name)

    rig = Rig("callback")
    rig.session.prompts = Partial()
    rig.run()
    assert rig.plays() == [("call-failed",)]
    rig.ends()
    assert rig.outcome.startswith("error: prompt 'enter-pin' not found") and rig.hung_up()
