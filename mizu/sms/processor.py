"""What a text message means, and what is done about it (SPEC §9).

The ESME hands over each ``deliver_sm``; the processor answers with the status for its
``deliver_sm_resp``, once the request is stored:

- delivery receipts (a message type in ``esm_class``) are acknowledged and ignored;
- parts of a concatenated message are acknowledged at once and held until the last one
  arrives (an SMSC may wait for each answer before it sends the next part);
- a text that cannot be decoded or parsed, an unknown sender, a wrong PIN or password:
  acknowledged (delivering it again would not help), nothing stored, a reply says why;
- the database unreachable: ``ESME_RX_T_APPN``, so the SMSC delivers it again later;
- a copy of a request already stored (the same user, A- and B-number within
  ``duplicate_window`` seconds: the SMSC delivering again a message whose answer was
  lost) answers the first callback and stores nothing; so does any text while the
  sender's callback is still live (one live request per A-number).

The sender (``source_addr``) is the A-number: the mobile network vouches for it, so a
sender listed in ``tb_anumbers`` is authenticated by it. Failed PINs and passwords count
towards a ban of the sender (``Bans``, kind ``sms``), and replies are rationed per sender
(``REPLY_BURST`` at once, then one a minute), so texts cannot be used to make mizu send
SMS to someone at the operator's expense.
"""

from __future__ import annotations

from smpp.pdu.pdu_types import CommandStatus
from twisted.internet import defer
from twisted.logger import Logger

from mizu.billing.money import amount
from mizu.buckets import TokenBuckets
from mizu.dispatch.request import CallbackRequest
from mizu.errors import AuthenticationFailed, MizuError, StoreError
from mizu.sms.coding import CodingError, decode_short_message
from mizu.sms.concat import Reassembly
from mizu.sms.text import SmsSyntaxError, parse

log = Logger()

BAN_KIND = "sms"
RECEIPT_TYPES = 0x3C  # esm_class bits 2-5: delivery receipts, acknowledgements
UDHI = 0x40
REPLY_BURST, REPLY_RATE = 5, 1 / 60


class SmsProcessor:
    """Turns texts into callback requests through the dispatcher; replies through
    ``reply(destination, text)`` (a Deferred, or None when no reply can be sent)."""

    def __init__(self, dispatcher, bans, clock, config, reply):
        self._dispatcher = dispatcher
        self._store = dispatcher.core.store
        self._bans = bans
        self._config = config  # callable: the [smpp] section in force
        self._reply = reply
        self._parts = Reassembly(clock)
        self._replies = TokenBuckets(clock, REPLY_RATE, REPLY_BURST)
        self._counted = dispatcher.metrics.sms

    @defer.inlineCallbacks
    def deliver(self, sms):
        """The ``command_status`` to answer ``sms`` (an ``InboundSms``) with."""
        sender = sms.source_addr
        if sms.esm_class & RECEIPT_TYPES:
            return self._done("receipt", CommandStatus.ESME_ROK)
        if self._bans.is_banned(BAN_KIND, sender):
            log.info("SMS from banned sender {sender} ignored", sender=sender)
            return self._done("banned", CommandStatus.ESME_ROK)
        try:
            part = decode_short_message(sms.short_message, sms.data_coding,
                                        bool(sms.esm_class & UDHI))
            text = self._parts.add(sender, part)
        except CodingError as e:
            self._answer(sender, f"Sorry, your message could not be read ({e}).")
            return self._done("unreadable", CommandStatus.ESME_ROK)
        if text is None:
            return self._done("part", CommandStatus.ESME_ROK)
        try:
            outcome, answer = yield self._act(sms, text)
        except StoreError as e:
            log.warn("SMS from {sender} not stored, the SMSC will retry: {e}", sender=sender,
                     e=e)
            return self._done("retry", CommandStatus.ESME_RX_T_APPN)
        except (SmsSyntaxError, MizuError) as e:
            if isinstance(e, AuthenticationFailed):
                self._bans.failed(BAN_KIND, sender)
            log.info("SMS from {sender} refused: {e}", sender=sender, e=e)
            outcome, answer = "refused", f"Not accepted: {e}."
        self._answer(sender, answer)
        return self._done(outcome, CommandStatus.ESME_ROK)

    def _done(self, outcome: str, status):
        self._counted.labels(outcome).inc()
        return status

    def _answer(self, destination: str, text: str) -> None:
        if not self._config().replies or self._replies.take(destination):
            return
        d = self._reply(destination, text)
        if d is not None:
            d.addErrback(lambda f: log.warn("SMS reply to {to} not sent: {e}", to=destination,
                                            e=f.getErrorMessage()))

    @defer.inlineCallbacks
    def _payer(self, command, sender: str):
        """The paying user: by PIN or username and password as any trigger (the
        dispatcher's rules), else the sender's number in ``tb_anumbers``."""
        if command.pincode or command.username:
            user, _ = yield self._dispatcher.payer(CallbackRequest(
                anum=sender, source="sms", pincode=command.pincode,
                username=command.username, password=command.password or ""))
            return user
        user = yield self._store.users.by_anumber(sender)
        if user is None:
            raise AuthenticationFailed(f"the number {sender} is not registered; send "
                                       "your PIN and the number to call")
        if user.usertype != "enduser":
            raise AuthenticationFailed("not an end user")
        return user

    @defer.inlineCallbacks
    def _act(self, sms, text: str):
        command = parse(text)
        user = yield self._payer(command, sms.source_addr)
        if command.action == "balance":
            credit = yield self._store.ledger.balance(user.id)
            return "balance", f"Your balance is {amount(credit)}."
        request = CallbackRequest(anum=command.anum or sms.source_addr, bnum=command.bnum,
                                  source="sms", userid=user.id,
                                  same_within=self._config().duplicate_window)
        cbid = yield self._dispatcher.submit(request, user=user)
        return "stored", self._accepted(cbid, request)

    @staticmethod
    def _accepted(cbid: int, request: CallbackRequest) -> str:
        then = f", then {request.bnum}" if request.bnum else ""
        return f"Callback {cbid} accepted: we will call {request.anum}{then}."
