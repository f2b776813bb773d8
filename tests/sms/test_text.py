"""Reading customers' texts: every SMS format, the disambiguation rules, and helpful refusals."""

import time

import pytest

from mizu.errors import MizuError
from mizu.sms import text
from mizu.sms.text import SmsCommand, SmsSyntaxError, parse

CB = "callback"


@pytest.mark.parametrize("message, command", [
    # <bnum>: a callback to the sender, destination known
    ("00442079460018", SmsCommand(CB, bnum="00442079460018")),
    ("+44-20-7946-0018", SmsCommand(CB, bnum="+442079460018")),
    ("+44(20)7946.0018", SmsCommand(CB, bnum="+442079460018")),
    ("4420111", SmsCommand(CB, bnum="4420111")),
    ("  4420111\r\n", SmsCommand(CB, bnum="4420111")),
    ("1" * 20, SmsCommand(CB, bnum="1" * 20)),
    ("+" + "1" * 20, SmsCommand(CB, bnum="+" + "1" * 20)),
    # CB / CALLBACK [<bnum>]
    ("cb", SmsCommand(CB)),
    ("CB", SmsCommand(CB)),
    ("Callback", SmsCommand(CB)),
    ("CALLBACK\n", SmsCommand(CB)),
    ("cb 4420111", SmsCommand(CB, bnum="4420111")),
    (" Callback  +44-20-7946-0018 ", SmsCommand(CB, bnum="+442079460018")),
    ("CB\t\t00492211", SmsCommand(CB, bnum="00492211")),
    ("cb\u00a04420111", SmsCommand(CB, bnum="4420111")),          # NBSP
    ("\u3000cb\u20034420111\u2028", SmsCommand(CB, bnum="4420111")),  # ideographic, em, line sep
    ("\uff23\uff22 4420111", SmsCommand(CB, bnum="4420111")),      # full-width "CB"
    # BALANCE / BAL
    ("BALANCE", SmsCommand("balance")),
    ("balance\n", SmsCommand("balance")),
    ("Bal", SmsCommand("balance")),
    # <pincode> <number>
    ("1234 4420111", SmsCommand(CB, anum="4420111", pincode="1234")),
    ("0044 2079460018", SmsCommand(CB, anum="2079460018", pincode="0044")),  # PIN wins
    ("1234\n+44-20-7946-0018", SmsCommand(CB, anum="+442079460018", pincode="1234")),
    # <pincode> <n1> <n2>: phone to phone
    ("1234 4917011 4420111", SmsCommand(CB, anum="4917011", bnum="4420111", pincode="1234")),
    ("0001 +4917011 00442079460018",
     SmsCommand(CB, anum="+4917011", bnum="00442079460018", pincode="0001")),
    # <username> <password> <number> [<number2>]
    ("alice s3cr3t 4917011",
     SmsCommand(CB, anum="4917011", username="alice", password="s3cr3t")),
    ("alice s3cr3t +4917011 4420111",
     SmsCommand(CB, anum="+4917011", bnum="4420111", username="alice", password="s3cr3t")),
    ("Alice S3cr3T! 4917011",
     SmsCommand(CB, anum="4917011", username="Alice", password="S3cr3T!")),
    ("alice 1234 4917011", SmsCommand(CB, anum="4917011", username="alice", password="1234")),
    ("1001 pässwörd€ 4917011",
     SmsCommand(CB, anum="4917011", username="1001", password="pässwörd€")),
    ("1001 2002 4917011 4420111",  # a numeric login needs the four-word form
     SmsCommand(CB, anum="4917011", bnum="4420111", username="1001", password="2002")),
    ("bob cb 4917011", SmsCommand(CB, anum="4917011", username="bob", password="cb")),
])
def test_good_texts(message, command):
    """Each format, with the whitespace, separators and case that phones really send."""
    assert parse(message) == command


@pytest.mark.parametrize("message, reason", [
    ("", text.EMPTY),
    (" \t\n\u00a0", text.EMPTY),
    ("hello", text.UNKNOWN),
    ("cbb", text.UNKNOWN),
    ("\U0001F44D", text.UNKNOWN),                      # a thumbs-up emoji
    ("+", text.UNKNOWN),
    ("--", text.UNKNOWN),
    ("44+20", text.UNKNOWN),
    ("cb cb", text.NOT_A_NUMBER),
    ("cb \U0001F4DE", text.NOT_A_NUMBER),
    ("cb 44x20", text.NOT_A_NUMBER),
    ("cb +", text.NOT_A_NUMBER),
    ("1" * 21, text.NUMBER_TOO_LONG),
    ("cb +" + "1" * 21, text.NUMBER_TOO_LONG),
    ("1234 " + "9" * 21, text.NUMBER_TOO_LONG),
    ("1" * 21 + " 4420111", text.PIN_TOO_LONG),
    (" Callback  +44 20 7946 0018", text.NO_SPACES),   # spaces separate words
    ("cb 4917011 4420111", text.NO_SPACES),
    ("cb 4917011 hello", text.CB_USAGE),
    ("balance please", text.BALANCE_USAGE),
    ("BAL 1234", text.BALANCE_USAGE),
    ("+44 2079460018", text.NO_SPACES),
    ("+44 20 79460018", text.NO_SPACES),
    ("hello there", text.PIN_USAGE),
    ("alice s3cr3t", text.PIN_USAGE),
    ("1234 hello", text.NOT_A_NUMBER),
    ("hello there friend", text.LOGIN_USAGE),
    ("1234 5678 hello", text.LOGIN_USAGE),
    ("alice s3cr3t 4917011 bob", text.LOGIN_USAGE),
    ("alice s3cr3t bob 4917011", text.LOGIN_USAGE),
    ("alice s3cr3t 4917011 " + "2" * 21, text.NUMBER_TOO_LONG),
    ("cb 1 2 3 4 5 6 7", text.NO_SPACES),            # eight words
    ("cb 1 2 3 4 5 6 7 8", text.TOO_MANY_WORDS),       # nine
    ("cb 1 2 3 x", text.CB_USAGE),
    ("1234 1 2 3 4", text.TOO_MANY_WORDS),
    ("please call me back on 4420111", text.TOO_MANY_WORDS),
])
def test_bad_texts(message, reason):
    """What cannot be read is refused with the reason that helps most."""
    with pytest.raises(SmsSyntaxError) as e:
        parse(message)
    assert str(e.value) == reason


@pytest.mark.parametrize("message, command", [
    ("\u0664\u0664\u0662\u0660", SmsCommand(CB, bnum="4420")),                # Arabic-Indic
    ("cb +\u06f4\u06f4\u06f2\u06f0", SmsCommand(CB, bnum="+4420")),           # Persian
    ("\u0967\u0968\u0969\u096a 4420", SmsCommand(CB, anum="4420", pincode="1234")),  # Devanagari
    ("\uff11\uff12\uff13\uff14 \uff0b\uff14\uff14\uff12\uff10",                # full-width
     SmsCommand(CB, anum="+4420", pincode="1234")),
])
def test_unicode_digits_become_ascii(message, command):
    """Any Unicode decimal digit counts and is stored as its ASCII digit."""
    assert parse(message) == command


@pytest.mark.parametrize("message", ["\u00b2\u00b3", "cb \u2460\u2461", "cb \u0bf0"])
def test_digit_like_characters_are_not_digits(message):
    """Superscripts, circled digits and Tamil ten are not decimal digits, so not numbers."""
    with pytest.raises(SmsSyntaxError):
        parse(message)


def test_long_texts_are_refused_quickly():
    """A 1,600-character text (or a huge one) with many words is refused without a full scan."""
    assert parse("cb " + " " * 1590 + "4420111") == SmsCommand(CB, bnum="4420111")
    huge = "cb 1 2 3 4 5 6 7 8 " + "x " * 5_000_000
    started = time.perf_counter()
    with pytest.raises(SmsSyntaxError, match="too many words"):
        parse(huge)
    assert time.perf_counter() - started < 0.025   # a full split takes ~0.07 s


def test_error_is_a_mizu_value_error():
    """Callers may catch it as ValueError or as MizuError; it carries its own code."""
    with pytest.raises(ValueError):
        parse("hello")
    with pytest.raises(MizuError) as e:
        parse("hello")
    assert e.value.code == "sms-syntax"


def test_reasons_fit_a_plain_sms():
    """Every reason is one SMS of characters that GSM 03.38 and ASCII share."""
    plain = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,:;!?'()+-/<>")
    reasons = [value for name, value in vars(text).items()
               if name.isupper() and not name.startswith("_") and isinstance(value, str)]
    assert len(reasons) == 11
    for reason in reasons:
        assert len(reason) <= 70 and set(reason) <= plain, reason
