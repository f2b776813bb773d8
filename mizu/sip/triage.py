"""Incoming INVITE triage (SPEC §4): which access number, and who is calling.

Unknown numbers are refused 404. A caller is authenticated by a traffic sender's IP
(``authip``), else by SIP digest against end users (401 challenge, 403 on a wrong
password), else let in anonymously when ``freeivraccess`` allows it. What happens
next is the callback core's decision (``IInboundCallHandler``).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mizu.errors import StoreError
from mizu.sip import digest
from mizu.sip.sipmsg import address_uri, uri_user
from mizu.telephony import Caller, IInboundCallHandler, IIncomingCallHandler

log = Logger()
REALM = "mizu"


@implementer(IInboundCallHandler)
class RefuseInbound:
    """Stands in until the callback core is attached: 480, nothing stored."""

    def inboundCall(self, leg, invite, access, caller):
        log.warn("no call handler for {number}; refusing", number=access.username)
        leg.reject(480, "Temporarily Unavailable")


@implementer(IIncomingCallHandler)
class Triage:
    """Decides 404 / 401 / 403, or hands an authenticated call to the core."""

    def __init__(self, users, settings, clock, core=None, realm: str = REALM):
        self._users = users
        self._settings = settings  # a callable: the global settings in force
        self._nonces = digest.Nonces(clock)
        self.core = core or RefuseInbound()
        self.realm = realm

    def incomingCall(self, leg, invite):
        d = self._triage(leg, invite)
        d.addErrback(self._failed, leg)

    def _failed(self, failure, leg):
        if failure.check(StoreError):
            log.warn("incoming call {leg} refused 503: {e}", leg=leg.id,
                     e=failure.getErrorMessage())
            leg.reject(503, "Service Unavailable")
            return
        log.failure("triage of incoming call {leg} failed", failure, leg=leg.id)
        leg.reject(500, "Server Internal Error")

    @defer.inlineCallbacks
    def _triage(self, leg, invite):
        number = uri_user(invite.request_uri) or uri_user(address_uri(invite.to_uri))
        access = yield self._users.access_number(number) if number else None
        if access is None:
            log.info("INVITE for {number!r} from {host}: not an access number",
                     number=number, host=invite.source_host)
            leg.reject(404, "Not Found")
            return
        caller = yield self._by_ip(invite, access)
        if caller is None and invite.authorization:
            caller = yield self._by_digest(leg, invite)
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
    def _anumber(invite) -> str:
        return uri_user(address_uri(invite.pai or invite.from_uri))

    @defer.inlineCallbacks
    def _by_ip(self, invite, access):
        sender = yield self._users.traffic_sender_for(invite.source_host)
        if sender is None:
            return None
        anumber = self._anumber(invite)
        user = None
        if access.anumberlookup and anumber:
            user = yield self._users.by_anumber(anumber)
        return Caller(anumber, "ip", user=user, sender=sender)

    def _challenge(self, leg, stale=False):
        header = digest.challenge(self.realm, self._nonces.issue(), stale)
        leg.reject(401, "Unauthorized", [f"WWW-Authenticate: {header}"])

    @defer.inlineCallbacks
    def _by_digest(self, leg, invite):
        params = digest.parse_authorization(invite.authorization)
        if params is None or "nonce" not in params or "username" not in params:
            leg.reject(403, "Forbidden")
            return None
        if not self._nonces.consume(params["nonce"]):
            self._challenge(leg, stale=True)  # ours but used or expired, or never ours
            return None
        user = yield self._users.by_username(params["username"])
        if (user is None or user.usertype != "enduser"
                or params.get("realm") != self.realm
                or not digest.verify(params, "INVITE", user.password)):
            log.info("digest authentication failed for {name!r} from {host}",
                     name=params["username"], host=invite.source_host)
            leg.reject(403, "Forbidden")
            return None
        return Caller(self._anumber(invite), "digest", user=user)
