"""Reading a short_message: GSM 03.38 with escapes, ASCII, Latin-1, UCS-2, the data coding
groups, and User Data Headers with concatenation (good and malformed)."""

import pytest

from mizu.errors import MizuError
from mizu.sms.coding import CodingError, Part, decode_short_message


def decode(data, data_coding=0, udhi=False):
    """The decoded text alone."""
    part = decode_short_message(data, data_coding, udhi)
    assert part.concat is None
    return part.text


# --- GSM 03.38, unpacked -------------------------------------------------------------------

@pytest.mark.parametrize("data, text", [
    (b"CB 4420111", "CB 4420111"),
    (b"Balance\n", "Balance\n"),
    (b"", ""),
    (b"\x00\x01\x02\x03", "@£$¥"),
    (b"\x11\x10\x15\x1f\x7f", "_ΔΩÉà"),
    (b"\x24\x40\x5b\x5f\x60\x7b", "¤¡Ä§¿ä"),
    (b"\x1b\x65 5", "€ 5"),
    (b"\x1b\x3c\x1b\x3e\x1b\x28\x1b\x29", "[]{}"),
    (b"\x1b\x2f\x1b\x3d\x1b\x14\x1b\x40\x1b\x0a", "\\~^|\f"),
    (b"a\x1b\x41b", "aAb"),             # unknown escape: the default table's character
    (b"a\x1b\x1bb", "a b"),             # escape to a further table: a space
    (b"ab\x1b", "ab"),                  # a trailing lone escape is dropped
])
def test_gsm_default_alphabet(data, text):
    """data_coding 0 is GSM 03.38 septets, one per octet, with the escape table."""
    assert decode(data, 0) == text


def test_gsm_table_is_complete_and_distinct():
    """All 127 septets other than the escape decode, to 127 different characters."""
    chars = {decode(bytes([septet])) for septet in range(0x80) if septet != 0x1B}
    assert len(chars) == 127
    assert all(len(c) == 1 for c in chars)


@pytest.mark.parametrize("data", [b"caf\xe9", b"\x80", b"CB \xff"])
def test_gsm_refuses_octets_above_7f(data):
    """Unpacked GSM has only septets; a high octet means the coding is not what it claims."""
    with pytest.raises(CodingError, match="not GSM 7-bit"):
        decode(data, 0)


# --- the other SMPP alphabets ---------------------------------------------------------------

@pytest.mark.parametrize("data, data_coding, text", [
    (b"CB @4420111_$", 1, "CB @4420111_$"),
    (b"caf\xe9 \xa3", 3, "café £"),
    (b"\xb1\xd0\xdb\xd0\xdd\xe1", 6, "Баланс"),
    (b"\xf9\xec\xe5\xed", 7, "שלום"),
    ("CB 4420111".encode("utf-16-be"), 8, "CB 4420111"),
    ("Баланс".encode("utf-16-be"), 8, "Баланс"),
    ("رصيد ٤٤٢٠".encode("utf-16-be"), 8, "رصيد ٤٤٢٠"),
    ("cb 4420111 \U0001F44D".encode("utf-16-be"), 8, "cb 4420111 \U0001F44D"),  # a pair
    ("\ufeffcb".encode("utf-16-be"), 8, "cb"),          # a leading BOM is dropped
    (b"\xd8\x3d\x00a", 8, "\ufffda"),                   # a lone surrogate, not an error
    (b"", 8, ""),
])
def test_other_alphabets(data, data_coding, text):
    """ASCII, Latin-1, Cyrillic, Hebrew and UCS-2 read as SMPP 3.4 §5.2.19 says."""
    assert decode(data, data_coding) == text


def test_ascii_is_strict():
    """IA5 with a high octet is refused rather than guessed."""
    with pytest.raises(CodingError, match="not ascii: octet 0xE9"):
        decode(b"caf\xe9", 1)


def test_odd_ucs2_is_refused():
    """UCS-2 comes in pairs of octets."""
    with pytest.raises(CodingError, match="odd"):
        decode(b"\x00C\x00", 8)


# --- the data coding groups -----------------------------------------------------------------

@pytest.mark.parametrize("data_coding, data, text", [
    (0x10, b"\x1b\x65", "€"),                       # general group, class 0 (flash), GSM
    (0x11, b"cb", "cb"),                            # class 1
    (0x18, "cb".encode("utf-16-be"), "cb"),         # class 0, UCS-2
    (0x48, "cb".encode("utf-16-be"), "cb"),         # automatic deletion, UCS-2
    (0x40, b"\x00", "@"),                           # automatic deletion, GSM
    (0xC0, b"\x01", "£"),                           # message waiting, discard
    (0xD8, b"\x01", "£"),                           # message waiting, store
    (0xE0, "€".encode("utf-16-be"), "€"),           # message waiting, store, UCS-2
    (0xF0, b"\x00", "@"),                           # message class 0, default alphabet
    (0xF3, b"cb", "cb"),                            # message class 3
])
def test_data_coding_groups(data_coding, data, text):
    """GSM 03.38 coding groups passed through by the SMSC pick the alphabet by their bits."""
    assert decode(data, data_coding) == text


@pytest.mark.parametrize("data_coding, reason", [
    (2, "binary message"),
    (4, "binary message"),
    (0x14, "binary message"),
    (0xF4, "binary message"),
    (0xF7, "binary message"),
    (0x30, "compressed message"),
    (0x60, "compressed message"),
    (5, "unsupported data_coding 5 "),
    (9, "unsupported data_coding 9 "),
    (14, "unsupported data_coding 14 "),
    (15, "unsupported data_coding 15 "),
    (0x1C, r"unsupported data_coding 28 \(0x1C\)"),
    (0x80, r"unsupported data_coding 128 \(0x80\)"),
    (0xBF, r"unsupported data_coding 191 \(0xBF\)"),
    (256, "unsupported data_coding 256"),
    (-1, "unsupported data_coding -1"),
])
def test_unreadable_codings_are_refused(data_coding, reason):
    """Binary, compressed, reserved and unsupported codings are refused, naming the number."""
    with pytest.raises(CodingError, match=reason):
        decode(b"cb", data_coding)


def test_error_is_a_mizu_value_error():
    """CodingError can be caught as ValueError or MizuError and has its own code."""
    with pytest.raises(ValueError):
        decode(b"", 2)
    with pytest.raises(MizuError) as e:
        decode(b"", 2)
    assert e.value.code == "sms-coding"


# --- User Data Headers ----------------------------------------------------------------------

@pytest.mark.parametrize("data, data_coding, part", [
    (b"\x05\x00\x03\x2a\x02\x01CB 44", 0, Part("CB 44", (0x2A, 2, 1))),
    (b"\x05\x00\x03\x2a\x02\x0220111", 0, Part("20111", (0x2A, 2, 2))),
    (b"\x06\x08\x04\x12\x34\x03\x03abc", 0, Part("abc", (0x1234, 3, 3))),
    (b"\x06\x08\x04\x12\x34\x03\x01" + "Ба".encode("utf-16-be"), 8,
     Part("Ба", (0x1234, 3, 1))),
    (b"\x05\x00\x03\x07\x01\x01cb", 0, Part("cb", (7, 1, 1))),
    (b"\x00cb", 0, Part("cb", None)),                               # empty header
    (b"\x04\x24\x02\x01\x02cb", 0, Part("cb", None)),               # national language only
    (b"\x0a\x24\x01\x01\x00\x03\x09\x04\x01\x05\x00cb", 0, Part("cb", (9, 4, 1))),  # skipped IEs
    (b"\x0a\x00\x03\x01\x02\x01\x00\x03\x02\x03\x02cb", 0, Part("cb", (2, 3, 2))),  # last wins
    (b"\x05\x00\x03\x2a\x02\x01", 0, Part("", (0x2A, 2, 1))),       # the header only
    (b"\x05\x00\x03\x2a\x02\x01\x80", 3, Part("\x80", (0x2A, 2, 1))),
])
def test_user_data_header(data, data_coding, part):
    """With UDHI the text follows the header; concatenation comes from IE 0x00 or 0x08."""
    assert decode_short_message(data, data_coding, True) == part


def test_udh_is_ignored_without_udhi():
    """Without the esm_class bit the same octets are text."""
    assert decode(b"\x00cb", 0) == "@cb"


@pytest.mark.parametrize("data, reason", [
    (b"", "empty message"),
    (b"\x06\x00\x03\x2a\x02\x01", "longer than the message"),
    (b"\x01\x00cb", "runs past the header"),
    (b"\x02\x00\x03\x2a\x02\x01", "runs past the header"),
    (b"\x03\x00\x03\x2a\x02\x01", "runs past the header"),
    (b"\x05\x00\x03\x2a\x00\x00cb", "part 0 of 0"),
    (b"\x05\x00\x03\x2a\x02\x00cb", "part 0 of 2"),
    (b"\x05\x00\x03\x2a\x02\x03cb", "part 3 of 2"),
    (b"\x06\x08\x04\x00\x01\x00\x01cb", "part 1 of 0"),
    (b"\x04\x00\x02\x2a\x02cb", "bad concatenation element"),
    (b"\x05\x08\x03\x00\x01\x02cb", "bad concatenation element"),
    (b"\x0a\x00\x03\x01\x02\x01\x00\x03\x02\x00\x01cb", "part 1 of 0"),  # a bad repeat
])
def test_malformed_user_data_header(data, reason):
    """A header that runs past its end or numbers its parts impossibly is refused."""
    with pytest.raises(CodingError, match=reason):
        decode_short_message(data, 0, True)


def test_gsm_text_after_header_is_still_checked():
    """The header's octets may be anything; the GSM text after it may not."""
    assert decode_short_message(b"\x05\x00\x03\xff\x02\x01a", 0, True).concat == (255, 2, 1)
    with pytest.raises(CodingError, match="not GSM"):
        decode_short_message(b"\x05\x00\x03\xff\x02\x01\xff", 0, True)
