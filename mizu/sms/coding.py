"""The text of a ``short_message``: its User Data Header and its alphabet, per SMPP 3.4 §5.2.19.

``data_coding`` 0x00-0x0F is SMPP's own table; 0x10 and above is a GSM 03.38 (3GPP 23.038)
data coding scheme, which SMSCs pass through for flash and message-waiting texts:

    0 (SMSC default)  GSM 03.38 default alphabet, one septet per octet as SMPP carries it,
                      with the 0x1B escape table (€ [ ] { } \\ ~ ^ | form feed)
    1 IA5 / ASCII     strict: an octet above 0x7F is an error
    3 Latin-1, 6 ISO-8859-5 (Cyrillic), 7 ISO-8859-8 (Hebrew)
    8 UCS-2           UTF-16BE, surrogate pairs accepted, a leading BOM dropped; a lone
                      surrogate (an emoji split across parts by the sending phone) is U+FFFD
    2, 4              8-bit binary: refused ("binary message")
    0x10-0x7F         general groups: bits 3-2 pick GSM / 8-bit / UCS-2; compressed refused
    0xC0-0xDF         message waiting, GSM;   0xE0-0xEF message waiting, UCS-2
    0xF0-0xFF         message class: bit 2 clear is GSM, set is 8-bit binary
    anything else     refused, naming the number

Some SMSCs send plain ASCII or Latin-1 as data_coding 0. Letters, digits and space read the
same in GSM, which is all the SMS commands need; ``@ $ _`` and the like come out differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from mizu.errors import MizuError

# GSM 03.38 default alphabet, by septet; 0x1B is the escape to the table below.
_GSM_DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# 0x1B 0x1B is reserved for a further table: 23.038 says show a space.
_GSM_EXTENSION = {0x0A: "\f", 0x14: "^", 0x1B: " ", 0x28: "{", 0x29: "}", 0x2F: "\\",
                  0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}

_SMPP_CODINGS = {0: "gsm", 1: "ascii", 2: "binary", 3: "latin-1", 4: "binary",
                 6: "iso8859-5", 7: "iso8859-8", 8: "ucs-2"}
_GENERAL_ALPHABETS = ("gsm", "binary", "ucs-2", None)

_CONCAT_8BIT = 0x00
_CONCAT_16BIT = 0x08


@dataclass(frozen=True)
class Part:
    """One short_message's text and, for a part of a longer message, where it belongs."""

    text: str
    concat: tuple[int, int, int] | None   # (reference, total parts, this part's number 1..total)


class CodingError(MizuError, ValueError):
    """A short_message whose text cannot be read (bad header, binary or unknown alphabet)."""

    code = "sms-coding"


def decode_short_message(data: bytes, data_coding: int, udhi: bool) -> Part:
    """The text of a short_message; ``udhi`` is esm_class bit 0x40 (a User Data Header first)."""
    alphabet = _alphabet(data_coding)
    concat = None
    if udhi:
        concat, data = _user_data_header(data)
    return Part(_decode(data, alphabet), concat)


def _alphabet(data_coding: int) -> str:
    if not 0 <= data_coding <= 0xFF:
        raise CodingError(f"unsupported data_coding {data_coding}")
    if data_coding < 0x10:
        alphabet = _SMPP_CODINGS.get(data_coding)
    elif data_coding < 0x80:
        if data_coding & 0x20:
            raise CodingError("compressed message")
        alphabet = _GENERAL_ALPHABETS[(data_coding >> 2) & 0x03]
    elif data_coding < 0xC0:
        alphabet = None
    elif data_coding < 0xE0:
        alphabet = "gsm"
    elif data_coding < 0xF0:
        alphabet = "ucs-2"
    else:
        alphabet = "binary" if data_coding & 0x04 else "gsm"
    if alphabet == "binary":
        raise CodingError("binary message")
    if alphabet is None:
        raise CodingError(f"unsupported data_coding {data_coding} (0x{data_coding:02X})")
    return alphabet


def _user_data_header(data: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    """(concat, the rest) of a message that starts with a UDH; other elements are skipped."""
    if not data:
        raise CodingError("empty message with a user data header")
    end = 1 + data[0]
    if end > len(data):
        raise CodingError("user data header longer than the message")
    concat = None
    pos = 1
    while pos < end:
        if pos + 2 > end or pos + 2 + data[pos + 1] > end:
            raise CodingError("user data header element runs past the header")
        iei, value = data[pos], data[pos + 2:pos + 2 + data[pos + 1]]
        pos += 2 + len(value)
        if iei == _CONCAT_8BIT:
            if len(value) != 3:
                raise CodingError("bad concatenation element")
            concat = (value[0], value[1], value[2])
        elif iei == _CONCAT_16BIT:
            if len(value) != 4:
                raise CodingError("bad concatenation element")
            concat = (value[0] << 8 | value[1], value[2], value[3])
        else:
            continue
        # a repeated element: the last one counts (3GPP 23.040 §9.2.3.24)
        _, total, seq = concat
        if total == 0 or not 1 <= seq <= total:
            raise CodingError(f"bad concatenation: part {seq} of {total}")
    return concat, data[end:]


def _decode(data: bytes, alphabet: str) -> str:
    if alphabet == "gsm":
        return _gsm(data)
    if alphabet == "ucs-2":
        if len(data) % 2:
            raise CodingError("UCS-2 message with an odd number of octets")
        text = data.decode("utf-16-be", errors="replace")
        return text[1:] if text.startswith("\ufeff") else text
    try:
        return data.decode(alphabet)
    except UnicodeDecodeError as e:
        raise CodingError(f"not {alphabet}: octet 0x{data[e.start]:02X}") from None


def _gsm(data: bytes) -> str:
    """Unpacked GSM 03.38 septets as text; an unknown escape shows its default character
    (23.038) and a trailing lone escape is dropped."""
    chars = []
    escaped = False
    for octet in data:
        if octet > 0x7F:
            raise CodingError(f"not GSM 7-bit: octet 0x{octet:02X}")
        if escaped:
            chars.append(_GSM_EXTENSION.get(octet, _GSM_DEFAULT[octet]))
            escaped = False
        elif octet == 0x1B:
            escaped = True
        else:
            chars.append(_GSM_DEFAULT[octet])
    return "".join(chars)
