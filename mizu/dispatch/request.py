"""What every trigger hands the dispatcher: a ``CallbackRequest``, and how numbers are checked."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mizu.errors import BadRequest

SOURCES = ("ani", "http", "web", "sms", "console", "db")
MAX_DIGITS = 20

_NUMBER = re.compile(rf"^(\+|00)?[0-9]{{1,{MAX_DIGITS}}}$")


def clean_number(number: str, what: str = "number") -> str:
    """``number`` as stored: digits, a leading ``+`` or ``00`` kept; ``BadRequest`` otherwise."""
    text = (number or "").strip().replace(" ", "").replace("-", "")
    if not text:
        raise BadRequest(f"{what} is missing")
    if not _NUMBER.match(text):
        raise BadRequest(f"{what} {number!r} is not a phone number (digits, optionally after "
                         f"+ or 00, at most {MAX_DIGITS})")
    return text


@dataclass(frozen=True)
class CallbackRequest:
    """A request to call ``anum`` back (and, when ``bnum`` is known, connect it to ``bnum``).

    The requester is identified in one of these ways, strongest first: ``userid`` (already
    authenticated by the front end, e.g. SIP digest or ANI); ``username`` with ``password``
    (HTTP, SMS); ``username`` alone when ``trusted`` (the admin console); ``pincode``
    (SMS); none of them, when the A-number's owner in ``tb_anumbers`` pays or, failing that,
    the callback IVR asks for a PIN (only trusted sources may leave the payer open).
    """

    anum: str
    bnum: str = ""
    source: str = "console"
    userid: int | None = None
    username: str = ""
    password: str | None = None
    pincode: str = ""
    trusted: bool = False
    accessnumber: str = ""
    campaign: int = 0
    callerid: str = ""
    delay: float | None = None
    same_within: float = 0.0  # a copy stored this many seconds ago is this request (SMS)
    idempotency_key: str = ""  # the client's key, claimed in tb_idempotency for the payer
