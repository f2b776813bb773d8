"""SIP header parsing used by the worker."""

from mizu.sip import sipmsg

INVITE = (
    "INVITE sip:4930555@127.0.0.1:5070;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK1\r\n"
    'f: "Alice" <sip:+4917012345@carrier.example>;tag=abc\r\n'
    "To: <sip:4930555@127.0.0.1>\r\n"
    "i: 1-2@127.0.0.1\r\n"
    "P-Asserted-Identity: <tel:+4917099999>\r\n"
    'Authorization: Digest username="alice",\r\n realm="mizu"\r\n'
    "Content-Type: application/sdp\r\n"
    "\r\n"
    "v=0\r\n"
)


def test_split_message_headers_compact_forms_and_folding():
    """Compact names map to full ones; folded lines join; the body is kept."""
    start, headers, body = sipmsg.split_message(INVITE)
    assert sipmsg.request_uri(start) == "sip:4930555@127.0.0.1:5070;transport=udp"
    assert sipmsg.header(headers, "From") == '"Alice" <sip:+4917012345@carrier.example>;tag=abc'
    assert sipmsg.header(headers, "call-id") == "1-2@127.0.0.1"
    assert sipmsg.header(headers, "authorization") == \
        'Digest username="alice", realm="mizu"'
    assert sipmsg.header(headers, "missing") == ""
    assert body.startswith("v=0")


def test_address_and_user():
    """The URI of a name-addr and its user part, for sip: and tel: URIs."""
    assert sipmsg.address_uri('"Alice" <sip:+4917012345@x>;tag=1') == "sip:+4917012345@x"
    assert sipmsg.address_uri("sip:123@host;tag=2") == "sip:123@host"
    assert sipmsg.uri_user("sip:+4917012345@x") == "4917012345"
    assert sipmsg.uri_user("tel:+4917099999") == "4917099999"
    assert sipmsg.uri_user("sip:4930555@127.0.0.1:5070;transport=udp") == "4930555"
    assert sipmsg.uri_user("mailto:x@y") == ""


def test_info_digits():
    """Both SIP INFO bodies give their digit; anything else gives none."""
    assert sipmsg.info_digit("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n") == "5"
    assert sipmsg.info_digit("application/dtmf-relay", "Signal= #\nDuration=100") == "#"
    assert sipmsg.info_digit("application/dtmf", "7\r\n") == "7"
    assert sipmsg.info_digit("application/dtmf", "11") == "#"
    assert sipmsg.info_digit("application/dtmf", "x") is None
    assert sipmsg.info_digit("text/plain", "5") is None
