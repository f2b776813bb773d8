"""Incoming INVITE triage (SPEC §4): which access number, and who is calling.

A source banned for repeated digest failures is refused 403 before anything else (no
database query). Unknown numbers are refused 404. A caller is authenticated by a traffic
sender's IP (``authip``), else by SIP digest against end users (401 challenge, 403 on
wrong credentials; a user with an empty password never authenticates), else let in
anonymously when ``freeivraccess`` allows it. What happens next is the callback core's
decision (``IInboundCallHandler``). After every database wait the leg is checked again:
a caller who gave up meanwhile is never handed on.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mizu.errors import LegGone, StoreError
from mizu.sip import digest
from mizu.sip.sipmsg import address_uri, uri_user
from mizu.telephony import Caller, IInboundCallHandler, IIncomingCallHandler, refuse

log = Logger()
REALM = "mizu"
BAN_KIND = "sip"


@implementer(IInboundCallHandler)
class RefuseInbound:
    """Stands in until the callback core is attached: 480, nothing stored."""

    def inboundCall(self, leg, invite, access, caller):
        log.warn("no call handler for {number}; refusing", number=access.username)
        refuse(leg, 480, "Temporarily Unavailable")


class _Gone(Exception):
    """The caller hung up while we were waiting."""


@implementer(IIncomingCallHandler)
class Triage:
    """Decides 403 / 404 / 401, or hands an authenticated call to the core."""

    def __init__(self, users, settings, clock, core=None, realm: str = REALM, bans=None):
        self._users = users
        self._settings = settings  # a callable: the global settings in force
        self._nonces = digest.Nonces(clock)
        self._bans = bans
        self.core = core or RefuseInbound()
        self.realm = realm

    def incomingCall(self, leg, invite):
        d = self._triage(leg, invite)
        d.addErrback(self._failed, leg)

    def _failed(self, failure, leg):
        if failure.check(_Gone, LegGone):
            log.info("incoming call {leg} ended during triage", leg=leg.id)
        elif failure.check(StoreError):
            log.warn("incoming call {leg} refused 503: {e}", leg=leg.id,
                     e=failure.getErrorMessage())
            refuse(leg, 503, "Service Unavailable")
        else:
            log.failure("triage of incoming call {leg} failed", failure, leg=leg.id)
            refuse(leg, 500, "Server Internal Error")

    @staticmethod
    def _still_there(leg, result):
        if leg.state == "ended":
            raise _Gone()
        return result

    def _wait(self, leg, d):
        return d.addCallback(lambda result: self._still_there(leg, result))

    @defer.inlineCallbacks
    def _triage(self, leg, invite):
        if self._bans is not None and self._bans.is_banned(BAN_KIND, invite.source_host):
            log.debug("INVITE from banned {host} refused", host=invite.source_host)
            refuse(leg, 403, "Forbidden")
            return
        number = uri_user(invite.request_uri) or uri_user(address_uri(invite.to_uri))
        access = yield self._wait(leg, self._users.access_number(number)
                                  if number else defer.succeed(None))
        if access is None:
            # Scanners send these all day: not worth more than a debug line.
            log.debug("INVITE for {number!r} from {host}: not an access number",
                      number=number, host=invite.source_host)
            refuse(leg, 404, "Not Found")
            return
        caller = yield self._wait(leg, self._by_ip(invite, access))
        if caller is None and invite.authorization:
            caller = yield self._wait(leg, self._by_digest(leg, invite))
            if caller is None:
                return  # answered 401 or 403
        if caller is None:
            if self._settings().freeivraccess:
                caller = Caller(self._anumber(invite), "anonymous")
            else:
                self._challenge(leg)
                return
        self.core.inboundCall(leg, invite, access, caller)

    @staticmethod
    def _anumber(invite, trust_pai: bool = False) -> str:
        """The caller's number: P-Asserted-Identity only from a trusted sender, else From."""
        return uri_user(address_uri(invite.pai if trust_pai and invite.pai
                                    else invite.from_uri))

    @defer.inlineCallbacks
    def _by_ip(self, invite, access):
        sender = yield self._users.traffic_sender_for(invite.source_host)
        if sender is None:
            return None
        anumber = self._anumber(invite, trust_pai=True)
        user = None
        if access.anumberlookup and anumber:
            user = yield self._users.by_anumber(anumber)
        return Caller(anumber, "ip", user=user, sender=sender)

    def _challenge(self, leg, stale=False):
        header = digest.challenge(self.realm, self._nonces.issue(), stale)
        refuse(leg, 401, "Unauthorized", [f"WWW-Authenticate: {header}"])

    def _forbid(self, leg, invite, why: str, name: str = ""):
        log.info("digest authentication failed for {name!r} from {host}: {why}",
                 name=name, host=invite.source_host, why=why)
        if self._bans is not None:
            self._bans.failed(BAN_KIND, invite.source_host)
        refuse(leg, 403, "Forbidden")

    @defer.inlineCallbacks
    def _by_digest(self, leg, invite):
        params = digest.parse_authorization(invite.authorization)
        if params is None or "nonce" not in params or "username" not in params:
            self._forbid(leg, invite, "malformed Authorization")
            return None
        if not self._nonces.consume(params["nonce"]):
            self._challenge(leg, stale=True)  # ours but used or expired, or never ours
            return None
        name = params["username"]
        if not digest.uri_matches(params.get("uri", ""), invite.request_uri):
            self._forbid(leg, invite, "digest uri is not the Request-URI", name)
            return None
        user = yield self._users.by_username(name)
        if (user is None or user.usertype != "enduser" or not user.password
                or params.get("realm") != self.realm
                or not digest.verify(params, "INVITE", user.password)):
            self._forbid(leg, invite, "wrong credentials", name)
            return None
        return Caller(self._anumber(invite), "digest", user=user)
