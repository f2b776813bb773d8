"""Abuse limits of the HTTP front end: request rates per address and per user, and bans
after failed logins (shared ``Bans``, kind ``http``).

The client is the connection's peer. ``X-Forwarded-For`` is believed only from the
operator's ``trusted_proxies``, and then only its last address (the one the proxy saw):
anyone else could name any address in it to dodge a limit or get someone else banned.
"""

from __future__ import annotations

from mizu.bans import address_key
from mizu.buckets import TokenBuckets
from mizu.http.errors import TooMany

BAN_KIND = "http"


class HttpLimits:
    """The limits in force for every HTTP request; ``configure`` applies a reload."""

    def __init__(self, config, bans, clock):
        self._bans = bans
        self._clock = clock
        self._addresses = TokenBuckets(clock, config.address_rate, config.address_burst)
        self._users = TokenBuckets(clock, config.user_rate, config.user_burst)
        self.configure(config)

    def configure(self, config) -> None:
        self.config = config
        self._proxies = frozenset(address_key(a) for a in config.trusted_proxies)
        self._addresses.configure(config.address_rate, config.address_burst)
        self._users.configure(config.user_rate, config.user_burst)

    def client(self, request) -> str:
        """The client's address: the peer, or what a trusted proxy says it saw."""
        peer = getattr(request.getClientAddress(), "host", "") or "unknown"
        if address_key(peer) in self._proxies:
            forwarded = request.getHeader(b"x-forwarded-for")
            if forwarded:
                last = forwarded.decode("latin-1").split(",")[-1].strip()
                if last:
                    return last
        return peer

    def check_address(self, request) -> None:
        """``TooMany`` for a banned client or one over its request rate."""
        client = self.client(request)
        banned = self._bans.remaining(BAN_KIND, client)
        if banned:
            raise TooMany("too many failed logins from your address", banned)
        wait = self._addresses.take(address_key(client))
        if wait:
            raise TooMany("too many requests from your address", wait)

    def check_user(self, userid: int) -> None:
        """``TooMany`` for a user over the rate of requests that create a callback."""
        wait = self._users.take(str(userid))
        if wait:
            raise TooMany("too many callback requests for this user", wait)

    def login_failed(self, request) -> None:
        """Count a failed login of the client (and maybe ban it)."""
        self._bans.failed(BAN_KIND, self.client(request))
