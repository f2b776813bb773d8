"""What a customer's SMS asks for: the words of an inbound text turned into an ``SmsCommand``.

The formats (SPEC §9), keywords in any case::

    <bnum>                                   callback to the sender, destination known
    CB | CALLBACK [<bnum>]                   callback to the sender (ANI authentication)
    BALANCE | BAL                            the sender's balance (ANI authentication)
    <pincode> <number>                       callback to <number>, authenticated by PIN
    <pincode> <n1> <n2>                      phone-to-phone n1 -> n2, authenticated by PIN
    <username> <password> <number> [<n2>]    the same, authenticated by username/password

How a text is read, deterministically:

1. Words are separated by any run of Unicode whitespace (space, tab, newline, NBSP, ...);
   leading and trailing whitespace is ignored. More than eight words are refused at once.
2. A *number* is an optional ``+`` followed by digits, with ``-`` ``.`` ``(`` ``)`` allowed
   anywhere as separators; it becomes its digits with the ``+`` kept (``+44-20-7946-0018`` is
   ``+442079460018``; ``0044...`` stays ``0044...``). At most 20 digits. A *PIN* is digits only.
   Any Unicode decimal digit (Arabic-Indic, Devanagari, full-width, ...) counts and becomes
   its ASCII digit. Spaces inside a number cannot work, because spaces separate words.
3. A first word that is a keyword (``CB``, ``CALLBACK``, ``BALANCE``, ``BAL``) makes it a
   keyword command, whatever follows; so a username equal to a keyword cannot use SMS.
4. Otherwise by word count: one number is ``<bnum>``; two words are ``<pincode> <number>``;
   three numbers are ``<pincode> <n1> <n2>``; three words that are not all numbers, and any
   four words, are ``<username> <password> <number> [<n2>]``. So a numeric username with a
   numeric password only works with four words (three would be read as a PIN and two numbers).
5. Anything else raises ``SmsSyntaxError``, whose text is a short reason fit to send back.

Usernames and passwords are kept exactly as written (case and characters).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from mizu.errors import MizuError

MAX_NUMBER_DIGITS = 20
MAX_WORDS = 4     # the longest format
_SCAN_WORDS = 8   # enough to tell "CB +44 20 7946 0018" (spaces in a number) from prose

_KEYWORDS = {"cb": "callback", "callback": "callback", "balance": "balance", "bal": "balance"}
_SEPARATORS = frozenset("-.()")
_PLUSES = frozenset("+\uff0b")  # the full-width plus comes with full-width digits

# Reasons go back by SMS: plain characters that GSM 03.38 and ASCII share, one message long.
_HELP = "send CB, CB <number>, <PIN> <number> or BALANCE"
EMPTY = "empty message: " + _HELP
UNKNOWN = "unknown command: " + _HELP
TOO_MANY_WORDS = "too many words: " + _HELP
NOT_A_NUMBER = "not a phone number: use digits, optionally after + or 00"
NUMBER_TOO_LONG = f"number too long: at most {MAX_NUMBER_DIGITS} digits"
PIN_TOO_LONG = f"PIN too long: at most {MAX_NUMBER_DIGITS} digits"
NO_SPACES = "write each number without spaces"
CB_USAGE = "send CB, or CB <number>"
BALANCE_USAGE = "send BALANCE on its own"
PIN_USAGE = "send <PIN> <number>, or <username> <password> <number>"
LOGIN_USAGE = "send <username> <password> <number>, or add a second number"


@dataclass(frozen=True)
class SmsCommand:
    """What a text asks for; empty strings mean "not given" (see each field)."""

    action: str          # "callback" or "balance"
    anum: str = ""       # the number to call back; "" means the sender (source_addr)
    bnum: str = ""       # the destination; "" means the IVR asks for it
    pincode: str = ""    # set when the text authenticates by PIN
    username: str = ""   # set (with password) when the text authenticates by username/password
    password: str = ""


class SmsSyntaxError(MizuError, ValueError):
    """A text that is none of the SMS formats; ``str()`` is a short reason to reply with."""

    code = "sms-syntax"


def parse(text: str) -> SmsCommand:
    """The command a customer's text asks for, or ``SmsSyntaxError`` saying why there is none."""
    words = text.split(maxsplit=_SCAN_WORDS)  # stops scanning a long text after a few words
    if not words:
        raise SmsSyntaxError(EMPTY)
    if len(words) > _SCAN_WORDS:
        raise SmsSyntaxError(TOO_MANY_WORDS)
    action = _KEYWORDS.get(unicodedata.normalize("NFKC", words[0]).casefold())
    if action == "callback":
        return _callback(words[1:])
    if len(words) > MAX_WORDS:
        raise SmsSyntaxError(TOO_MANY_WORDS)
    if action == "balance":
        if len(words) > 1:
            raise SmsSyntaxError(BALANCE_USAGE)
        return SmsCommand("balance")
    if len(words) == 1:
        if _digits(words[0]) is None:
            raise SmsSyntaxError(UNKNOWN)
        return SmsCommand("callback", bnum=_number(words[0]))
    if len(words) == 2:
        return _by_pin(*words)
    if len(words) == 3 and all(_digits(word) is not None for word in words):
        return _by_pin(*words)
    return _by_login(*words)


def _callback(rest: list[str]) -> SmsCommand:
    if not rest:
        return SmsCommand("callback")
    if len(rest) == 1:
        return SmsCommand("callback", bnum=_number(rest[0]))
    if all(_digits(word) is not None for word in rest):
        raise SmsSyntaxError(NO_SPACES)  # "CB +44 20 7946 0018": joining could dial a wrong number
    raise SmsSyntaxError(CB_USAGE)


def _by_pin(pin: str, anum: str, bnum: str | None = None) -> SmsCommand:
    if not pin.isdecimal():
        # "+44 2079460018": a number split by a space, not a PIN
        raise SmsSyntaxError(NO_SPACES if _digits(pin) is not None else PIN_USAGE)
    if len(pin) > MAX_NUMBER_DIGITS:
        raise SmsSyntaxError(PIN_TOO_LONG)
    return SmsCommand("callback", anum=_number(anum), bnum=_number(bnum) if bnum else "",
                      pincode=_ascii_digits(pin))


def _by_login(username: str, password: str, anum: str, bnum: str | None = None) -> SmsCommand:
    if _digits(anum) is None or (bnum is not None and _digits(bnum) is None):
        raise SmsSyntaxError(LOGIN_USAGE)
    return SmsCommand("callback", anum=_number(anum), bnum=_number(bnum) if bnum else "",
                      username=username, password=password)


def _number(word: str) -> str:
    """The word as a phone number, or ``SmsSyntaxError``."""
    number = _digits(word)
    if number is None:
        raise SmsSyntaxError(NOT_A_NUMBER)
    if len(number.lstrip("+")) > MAX_NUMBER_DIGITS:
        raise SmsSyntaxError(NUMBER_TOO_LONG)
    return number


def _digits(word: str) -> str | None:
    """The word's digits in ASCII, after a kept leading '+', if it is number-shaped; else None."""
    plus = word[0] in _PLUSES
    digits = []
    for char in word[1:] if plus else word:
        if char.isdecimal():
            digits.append(_ascii_digits(char))
        elif char not in _SEPARATORS:
            return None
    if not digits:
        return None
    return ("+" if plus else "") + "".join(digits)


def _ascii_digits(decimal: str) -> str:
    """Unicode decimal digits as ASCII digits ('٤٢' -> '42')."""
    if decimal.isascii():
        return decimal
    return "".join(str(unicodedata.decimal(char)) for char in decimal)
