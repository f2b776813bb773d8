"""SIP digest authentication (RFC 2617, MD5 with qop=auth) with single-use nonces."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def parse_authorization(value: str) -> dict[str, str] | None:
    """The parameters of a ``Digest`` Authorization header, or None if it is not one."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    return {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
            for m in _PARAM.finditer(rest)}


def expected_response(params: dict[str, str], method: str, password: str) -> str:
    """The response a client knowing ``password`` computes for these parameters."""
    ha1 = md5(f"{params['username']}:{params['realm']}:{password}")
    ha2 = md5(f"{method}:{params['uri']}")
    return md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")


def verify(params: dict[str, str], method: str, password: str) -> bool:
    """Whether the Authorization parameters prove knowledge of ``password`` (qop=auth)."""
    needed = ("username", "realm", "nonce", "uri", "response", "nc", "cnonce", "qop")
    if any(k not in params for k in needed) or params["qop"].lower() != "auth":
        return False
    if params.get("algorithm", "MD5").upper() != "MD5":
        return False
    return hmac.compare_digest(expected_response(params, method, password),
                               params["response"].lower())


def _uri_parts(uri: str) -> tuple[str, str, str]:
    """(scheme, user, host[:port]) of a SIP URI, lower-cased where case does not matter."""
    scheme, _, rest = uri.strip().partition(":")
    rest = rest.split(";")[0].split("?")[0]
    user, at, host = rest.rpartition("@")
    return scheme.lower(), user if at else "", host.lower()


def uri_matches(digest_uri: str, request_uri: str) -> bool:
    """Whether a digest ``uri`` names the Request-URI: the same URI, or (as SIPp and some
    phones send it) the same scheme, host and port with no user part."""
    if digest_uri == request_uri:
        return True
    d, r = _uri_parts(digest_uri), _uri_parts(request_uri)
    return bool(d[2]) and d[0] == r[0] and d[2] == r[2] and d[1] in ("", r[1])


class Nonces:
    """Nonces we issued, each valid once and for ``ttl`` seconds."""

    def __init__(self, clock, ttl: float = 60.0, limit: int = 100_000):
        self._clock, self._ttl, self._limit = clock, ttl, limit
        self._issued: dict[str, float] = {}

    def issue(self) -> str:
        now = self._clock.seconds()
        if len(self._issued) >= self._limit:
            self._issued = {n: t for n, t in self._issued.items() if t > now}
        nonce = secrets.token_hex(16)
        self._issued[nonce] = now + self._ttl
        return nonce

    def consume(self, nonce: str) -> bool:
        """True the first time a live nonce of ours is presented, False after."""
        expires = self._issued.pop(nonce, None)
        return expires is not None and expires > self._clock.seconds()


def challenge(realm: str, nonce: str, stale: bool = False) -> str:
    """A ``WWW-Authenticate`` header value."""
    value = f'Digest realm="{realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'
    return value + (", stale=true" if stale else "")
