"""The dispatcher: one ``submit()`` for every trigger, and the queue that is ``tb_callbacks``.

``submit`` authenticates the requester, stores the row and only then answers with its id.
Due rows are claimed with ``FOR UPDATE SKIP LOCKED`` (so nodes sharing a database never
take the same row) whenever PostgreSQL notifies an insert, a session ends, a delayed row
falls due, or the slow poll runs. Rows are claimed only while the telephony has room for
both legs. Live sessions send a heartbeat; a recovery pass at start, and every
``stale_after`` seconds for silent nodes, settles what a crash left behind.
"""

from __future__ import annotations

import hmac
import socket

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from mizu.billing.money import amount
from mizu.dispatch.callback import CallbackCall
from mizu.dispatch.guards import limits_for
from mizu.dispatch.recovery import recover
from mizu.dispatch.request import SOURCES, CallbackRequest, clean_number
from mizu.dispatch.session import Core
from mizu.dispatch.tables import Tables
from mizu.errors import AuthenticationFailed, BadRequest, Blocked, LimitReached, NotFound
from mizu.ivr.session import IvrLimits
from mizu.store.ledger import money

log = Logger()
CHANNEL = "mizu_callbacks"
_CLAIM_BATCH = 20
_RETRY_HOURLY = 600  # seconds a client refused by an hourly limit is told to wait


def node_name(config) -> str:
    """This node's name in ``tb_callbacks.node``: the host and its SIP port."""
    return f"{socket.gethostname()}:{config.sip.port}"


class Dispatcher(Service):
    """Owns the callback queue and every live call session."""

    name = "dispatcher"

    def __init__(self, root, telephony, clock):
        self._root = root
        self._clock = clock
        self.metrics = root.metrics
        self.core = Core(telephony, root.store, clock, node_name(root.config),
                         lambda: root.settings, lambda: self.tables, lambda: root.config,
                         self.metrics)
        self.metrics.watch(lambda: len(self.sessions),
                           lambda: telephony.available(1) if telephony is not None else 0)
        self.tables: Tables | None = None
        self.sessions: dict[str, object] = {}
        self.draining = False  # the operator's drain: no claims, no new incoming calls
        self._draining = False
        self._again = False
        self._wake_call = None
        self._loops: list[task.LoopingCall] = []
        self._pending_tables = None
        self._starting = 0  # claimed rows whose A-leg is not placed yet: not yet in available()

    # -- lifecycle ------------------------------------------------------------------------
    @defer.inlineCallbacks
    def startService(self):
        Service.startService(self)
        config = self._root.config
        self.tables = yield Tables.load(self._root.store.catalog, config)
        yield recover(self._root.store, self.core.node, config.callback.stale_after,
                      config.callback.max_attempts)
        yield self._root.store.pool.listen(CHANNEL, lambda payload: self.wake())
        cb = config.callback
        for interval, f in ((cb.poll_interval, self.wake), (cb.heartbeat, self._heartbeat),
                            (cb.stale_after, self._recover_others)):
            loop = task.LoopingCall(f)
            loop.clock = self._clock
            loop.start(interval, now=False).addErrback(
                lambda failure: log.failure("dispatcher loop stopped", failure))
            self._loops.append(loop)
        log.info("dispatcher {node} ready: {rates} rates, {routes} routes, {c} campaigns",
                 node=self.core.node, rates=len(self.tables.rates),
                 routes=len(self.tables.routes), c=len(self.tables.campaigns))
        self.wake()

    def stopService(self):
        Service.stopService(self)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        if self._wake_call is not None and self._wake_call.active():
            self._wake_call.cancel()
        # The SIP bridge stopped first (reverse start order) and ended every leg: wait
        # for the sessions to write their CDRs while the store is still up. What a
        # session still leaves open after that, recovery settles at the next start.
        live = [s.finished for s in self.sessions.values() if not s.finished.called]
        if not live:
            return None
        log.info("waiting for {n} call(s) to settle", n=len(live))
        waiting = defer.Deferred()

        def done(_=None):
            if not waiting.called:
                waiting.callback(None)

        defer.DeferredList(live, consumeErrors=True).addBoth(done)
        timeout = self._clock.callLater(10, done)
        waiting.addBoth(lambda _: timeout.cancel() if timeout.active() else None)
        return waiting

    def ivr_limits(self) -> IvrLimits:
        ivr = self._root.config.ivr
        return IvrLimits(first_digit=ivr.first_digit_timeout,
                         inter_digit=ivr.inter_digit_timeout,
                         session_limit=ivr.max_ivr_time,
                         max_auth_fail=self._root.settings.maxivrauthfail)

    # -- reload: load everything first, apply only if all of it is good -------------------
    @defer.inlineCallbacks
    def prepareReload(self, config, settings):
        """Load the tables for ``config``; fails with ``ConfigError`` and changes nothing."""
        self._pending_tables = yield Tables.load(self._root.store.catalog, config)

    def reconfigService(self, config, settings):
        if self._pending_tables is not None:
            self.tables, self._pending_tables = self._pending_tables, None

    # -- submit ---------------------------------------------------------------------------
    @defer.inlineCallbacks
    def submit(self, request: CallbackRequest, authenticated: bool | None = None,
               user=None):
        """Authenticate and store ``request``; fires with its id once it is stored.

        ``user``: the ``User`` of ``request.userid`` when the front end has just loaded it
        (authenticating), which saves looking it up again."""
        with self.metrics.submit.time():
            cbid = yield self._submit(request, authenticated, user)
        self.metrics.requests.labels(request.source).inc()
        return cbid

    @defer.inlineCallbacks
    def _submit(self, request: CallbackRequest, authenticated: bool | None, known=None):
        if request.source not in SOURCES:
            raise BadRequest(f"unknown source {request.source!r}")
        anum = clean_number(request.anum, "A-number")
        bnum = clean_number(request.bnum, "B-number") if request.bnum else ""
        self._check_blocklist(anum, "A-number")
        if bnum:
            self._check_blocklist(bnum, "B-number")
        user, authed = yield self.payer(request, anum, known)
        if authenticated is not None:
            authed = authenticated and user is not None
        if request.source != "console":  # the operator's own requests are not counted
            yield self._check_usage(user, anum)
        settings = self._root.settings
        delay = float(settings.callbackdelay if request.delay is None else request.delay)
        cbid = yield self._root.store.callbacks.insert(
            userid=user.id if user else None, anum=anum, bnum=bnum, source=request.source,
            accessnumber=request.accessnumber, ivrid=request.campaign, authenticated=authed,
            callerid=request.callerid, delay=max(0.0, delay), same_within=request.same_within,
            idempotency=(user.id, request.idempotency_key)
            if request.idempotency_key and user else None)
        log.info("callback {id} stored: {anum} -> {bnum} from {source} user={user}", id=cbid,
                 anum=anum, bnum=bnum or "(IVR asks)", source=request.source,
                 user=user.username if user else "-")
        if delay <= 0:
            self.wake()
        return cbid

    def _check_blocklist(self, number: str, what: str) -> None:
        prefix = self.tables.blocked_prefix(number) if self.tables else None
        if prefix is not None:
            log.warn("fraud guard: {what} {number} refused, prefix {prefix} is blocked",
                     what=what, number=number, prefix=prefix)
            raise Blocked(f"{what} {number} is not allowed: {prefix} is a blocked "
                          "(premium-rate or fraud-risk) destination")

    @defer.inlineCallbacks
    def _check_usage(self, user, anum: str):
        """The hourly request limits and the daily spend cap ([fraud]); ``LimitReached``."""
        fraud = self._root.config.fraud
        limits = limits_for(fraud, user)
        per_user, cap = limits.per_hour, limits.daily_cap
        if not (per_user or fraud.anumber_per_hour or cap):
            return
        used = yield self._root.store.usage.recent(
            user.id if user else None, anum, 3600, per_user, fraud.anumber_per_hour)
        refusal, retry = None, _RETRY_HOURLY
        if per_user and used.by_user >= per_user:
            refusal = (f"too many callback requests: {used.by_user} in the last hour "
                       f"(at most {per_user})")
        elif fraud.anumber_per_hour and used.by_anumber >= fraud.anumber_per_hour:
            refusal = (f"too many callback requests for {anum}: {used.by_anumber} in the "
                       f"last hour (at most {fraud.anumber_per_hour})")
        elif cap is not None and used.spent_today >= money(cap):
            refusal = f"the daily spend limit of {amount(money(cap))} is reached"
            retry = 86400 - int(self._clock.seconds()) % 86400  # until 00:00 UTC
        if refusal is not None:
            log.warn("fraud guard: callback for {anum} by {user} refused: {why}", anum=anum,
                     user=user.username if user else "-", why=refusal)
            raise LimitReached(refusal, retry)

    @defer.inlineCallbacks
    def payer(self, request: CallbackRequest, anum: str | None = None, known=None):
        """(user, authenticated) for a request; ``AuthenticationFailed`` stores nothing.
        ``anum``: the request's A-number as cleaned (default: as given)."""
        anum = request.anum if anum is None else anum
        users = self._root.store.users
        if request.source == "ani" and request.userid is None:
            return None, False  # the policy found no payer: the IVR asks for a PIN
        if request.userid is not None:
            if known is not None and known.id == request.userid:
                user = known
            else:
                user = yield users.by_id(request.userid)
            if user is None:
                raise NotFound(f"no user with id {request.userid}")
        elif request.username and request.password is not None:
            user = yield self.authenticate(request.username, request.password)
        elif request.username:
            user = yield users.by_username(request.username)
            if not request.trusted:
                raise AuthenticationFailed("a password is required")
            elif user is None:
                raise NotFound(f"no user {request.username!r}")
        elif request.pincode:
            user = yield users.by_pincode(request.pincode)
            if user is None:
                raise AuthenticationFailed("wrong PIN")
        elif request.trusted:
            user = None
            if self._root.settings.anumberhandling in (2, 3):
                user = yield users.by_anumber(anum)
            return user, user is not None
        else:
            raise AuthenticationFailed("credentials are required")
        if user.usertype != "enduser":
            raise AuthenticationFailed(f"user {user.username!r} is not an end user")
        return user, True

    @defer.inlineCallbacks
    def authenticate(self, username: str, password: str):
        """The end user with this username and password; ``AuthenticationFailed`` if none
        (an empty stored password never matches)."""
        user = yield self._root.store.users.by_username(username) if username else None
        good = (user is not None and user.password != "" and hmac.compare_digest(
            user.password.encode(), (password or "").encode()))
        if not good or user.usertype != "enduser":
            raise AuthenticationFailed("wrong username or password")
        return user

    # -- the queue ------------------------------------------------------------------------
    def wake(self) -> None:
        """Look for due rows now (coalesced with a pass already running)."""
        if not self.running:
            return
        if self._draining:
            self._again = True
            return
        self._draining = True
        self._drain().addErrback(
            lambda f: log.warn("callback queue pass failed: {e}", e=f.getErrorMessage())
        ).addBoth(self._drained)

    def _drained(self, _):
        self._draining = False
        if self._again:
            self._again = False
            self.wake()

    def _schedule(self, delay: float) -> None:
        delay = max(0.02, delay)
        if self._wake_call is not None and self._wake_call.active():
            if self._wake_call.getTime() <= self._clock.seconds() + delay:
                return
            self._wake_call.cancel()
        self._wake_call = self._clock.callLater(delay, self.wake)

    @defer.inlineCallbacks
    def _drain(self):
        callbacks = self._root.store.callbacks
        if self.core.telephony is None or self.draining:
            return  # a node without SIP (or drained) stores requests; others dial them
        while self.running:
            room = self.core.telephony.available(2) - self._starting
            if room <= 0:
                due = yield callbacks.next_due()
                if due is not None and due <= 0:
                    self._schedule(0.5)  # waiting for a free slot
                return
            rows = yield callbacks.claim(self.core.node, min(room, _CLAIM_BATCH))
            for row in rows:  # each starts on its own: a slow one holds up no other
                self._start(row).addErrback(
                    lambda f, row=row: log.failure("callback {id} not started", f, id=row.id))
            if len(rows) < min(room, _CLAIM_BATCH):
                break
        due = yield callbacks.next_due()
        if due is not None:
            self._schedule(min(due, self._root.config.callback.poll_interval))

    @defer.inlineCallbacks
    def _start(self, row):
        self._starting += 1
        try:
            user = (yield self._root.store.users.by_id(row.userid)) if row.userid else None
            call = CallbackCall(self.core, row, user, self.ivr_limits())
            self.track(call)
            log.info("callback {id}: calling {anum}", id=row.id, anum=row.anum)
            yield call.start().addErrback(self._start_failed, call)
        finally:
            self._starting -= 1

    def _start_failed(self, failure, call):
        log.failure("callback {key} failed to start", failure, key=call.key)
        if not call.finished.called:
            call.settle("failed", f"internal error: {failure.getErrorMessage()}")

    def track(self, session) -> None:
        """Keep ``session`` until it finishes; a finished one makes room for the queue."""
        self.sessions[session.key] = session

        def done(result):
            self.sessions.pop(session.key, None)
            self.metrics.finished.labels(str(result)).inc()
            self.wake()
            return result

        session.finished.addBoth(done)

    # -- heartbeat and recovery of other nodes --------------------------------------------
    def _heartbeat(self):
        store = self._root.store
        ids = [s.callbackid for s in self.sessions.values() if s.callbackid is not None]
        cdrs = [c for s in self.sessions.values() for c in s.open_cdrs()]
        keys = list(self.sessions)
        if not keys:
            return None
        d = defer.gatherResults([store.callbacks.heartbeat(ids),
                                 store.ledger.heartbeat(cdrs, keys)], consumeErrors=True)
        d.addErrback(lambda f: log.warn("heartbeat not stored: {e}", e=f.getErrorMessage()))
        return d

    def _recover_others(self):
        cb = self._root.config.callback
        d = recover(self._root.store, None, cb.stale_after, cb.max_attempts)
        d.addErrback(lambda f: log.warn("recovery pass failed: {e}", e=f.getErrorMessage()))
        return d

    # -- console --------------------------------------------------------------------------
    def session_for(self, ident: str):
        """The live session with this key, or of callback id ``ident``."""
        if ident in self.sessions:
            return self.sessions[ident]
        for session in self.sessions.values():
            if str(session.callbackid) == ident:
                return session
        return None

    def status_lines(self) -> list[str]:
        t = self.tables
        lines = [f"dispatcher node={self.core.node} sessions={len(self.sessions)} "
                 f"rates={len(t.rates) if t else 0} routes={len(t.routes) if t else 0} "
                 f"campaigns={len(t.campaigns) if t else 0}"]
        if self.draining:
            lines.append(f"draining: {len(self.sessions)} live call(s) left; no new calls")
        return lines

    # -- the operator's drain -------------------------------------------------------------
    def drain(self) -> int:
        """Stop claiming queued callbacks and taking new incoming calls; live calls go on.
        Requests are still stored (for other nodes, or for after ``resume``). Fires with
        the number of live calls."""
        self.draining = True
        log.info("draining: {n} live call(s); no new calls", n=len(self.sessions))
        return len(self.sessions)

    def resume(self) -> None:
        """End a drain: claim queued callbacks and take incoming calls again."""
        self.draining = False
        log.info("drain cancelled: taking calls again")
        self.wake()

    def call_lines(self) -> list[str]:
        return [s.describe() for s in self.sessions.values()]
