"""Digest authentication: RFC 2617 vectors, parsing, single-use nonces."""

from twisted.internet.task import Clock

from mizu.sip import digest

# RFC 2617 §3.5: user Mufasa, password "Circle Of Life".
RFC_HEADER = ('Digest username="Mufasa", realm="testrealm@host.com", '
              'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
              'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
              'opaque="5ccc069c403ebaf9f0171e9517f40e41"')


def test_rfc2617_vector():
    """The RFC's own example verifies with its password, and not with another."""
    params = digest.parse_authorization(RFC_HEADER)
    assert params["username"] == "Mufasa" and params["nc"] == "00000001"
    assert digest.expected_response(params, "GET", "Circle Of Life") == \
        "6629fae49393a05397450978507c4ef1"
    assert digest.verify(params, "GET", "Circle Of Life")
    assert not digest.verify(params, "GET", "circle of life")
    assert not digest.verify(params, "INVITE", "Circle Of Life")


def test_missing_qop_or_other_algorithm_is_refused():
    """Only MD5 with qop=auth is accepted."""
    params = digest.parse_authorization(RFC_HEADER)
    assert not digest.verify({k: v for k, v in params.items() if k != "qop"}, "GET",
                             "Circle Of Life")
    assert not digest.verify({**params, "algorithm": "SHA-256"}, "GET", "Circle Of Life")


def test_parse_rejects_other_schemes():
    """A Basic header is not a digest."""
    assert digest.parse_authorization("Basic QWxhZGRpbjpvcGVu") is None


def test_nonces_are_single_use_and_expire():
    """A nonce works once, within its lifetime; unknown ones never."""
    clock = Clock()
    nonces = digest.Nonces(clock, ttl=60)
    a, b = nonces.issue(), nonces.issue()
    assert a != b
    assert nonces.consume(a) and not nonces.consume(a)
    clock.advance(61)
    assert not nonces.consume(b)
    assert not nonces.consume("deadbeef")


def test_challenge_header():
    """The challenge names realm, nonce, MD5 and qop=auth; stale when asked."""
    assert digest.challenge("mizu", "abc") == \
        'Digest realm="mizu", nonce="abc", algorithm=MD5, qop="auth"'
    assert digest.challenge("mizu", "abc", stale=True).endswith(", stale=true")


def test_the_digest_uri_must_name_the_request_uri():
    """The same URI, or the same host and port without a user (SIPp's default), matches;
    another user, host, port or scheme does not."""
    request = "sip:4930555@127.0.0.1:5070"
    assert digest.uri_matches(request, request)
    assert digest.uri_matches("sip:127.0.0.1:5070", request)
    assert not digest.uri_matches("sip:4930666@127.0.0.1:5070", request)
    assert not digest.uri_matches("sip:127.0.0.1:5071", request)
    assert not digest.uri_matches("sip:4930555@10.0.0.1:5070", request)
    assert not digest.uri_matches("sips:127.0.0.1:5070", request)
    assert not digest.uri_matches("", request)
