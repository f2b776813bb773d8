"""Credit, reservations and CDRs: every movement of money is one transaction.

A call reserves part of its payer's credit before the B leg is dialled, so concurrent calls
on one account can never spend more than it holds; settling writes the call's CDRs, charges
their cost and drops the reservation at once. Open (``settled = false``) CDRs with a
heartbeat let a restarted or surviving node bill the legs a crash interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal

from twisted.internet import defer
from twisted.logger import Logger

from mizu.errors import InsufficientCredit, LimitReached

log = Logger()

_CENTS = Decimal("0.0001")

# Column order matches the Cdr fields after ``id``; times cross as POSIX seconds.
_CDR_COLUMNS = ("leg", "caller", "callee", "callbackid", "userid", "accessnumber", "starttime",
                "answertime", "endtime", "duration", "billedduration", "cost", "result",
                "price", "initblock", "increment", "connectfee", "session", "node")
_TIMES = ("starttime", "answertime", "endtime")
_CDR_SELECT = ", ".join(
    [f"extract(epoch FROM {c})::float8" if c in _TIMES else c for c in _CDR_COLUMNS] + ["id"])

_UNSETTLED_SELECT = _CDR_SELECT.replace(
    "extract(epoch FROM endtime)", "extract(epoch FROM coalesce(heartbeat, answertime))")


def _placeholder(column: str) -> str:
    return "to_timestamp(%s)" if column in _TIMES else "%s"


def money(value) -> Decimal:
    """``value`` as a Decimal rounded HALF_UP to the 4 places credit is kept in."""
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    return value.quantize(_CENTS, rounding=ROUND_HALF_UP)


@dataclass
class Cdr:
    """One leg's call detail record; ``id`` is set once it is stored."""

    leg: str
    caller: str
    callee: str
    callbackid: int | None = None
    userid: int | None = None
    accessnumber: str = ""
    starttime: float = 0
    answertime: float | None = None
    endtime: float | None = None
    duration: int = 0
    billedduration: int = 0
    cost: Decimal = Decimal(0)
    result: str = ""
    price: Decimal = Decimal(0)
    initblock: int = 0
    increment: int = 1
    connectfee: Decimal = Decimal(0)
    session: str = ""
    node: str = ""
    id: int | None = None

    def _values(self) -> tuple:
        return tuple(getattr(self, c) for c in _CDR_COLUMNS)


assert [f.name for f in fields(Cdr)] == [*_CDR_COLUMNS, "id"]


@dataclass(frozen=True)
class Reservation:
    """Credit held for one live call (``session``) until it is settled."""

    id: int
    userid: int
    session: str
    amount: Decimal


def _reserve(cursor, userid, session, minimum, wanted, node, max_calls, daily_cap,
             cap_minimum):
    @defer.inlineCallbacks
    def run():
        # The row lock serialises every reservation and charge on this account, so the
        # limits below hold however many calls start at once.
        yield cursor.execute(
            "SELECT credit FROM tb_user WHERE id = %s FOR NO KEY UPDATE", (userid,))
        row = cursor.fetchone()
        if row is None:
            raise InsufficientCredit(f"user {userid} does not exist; nothing to reserve from")
        credit = row[0]
        yield cursor.execute(
            "SELECT coalesce(sum(amount), 0), count(DISTINCT session) FILTER"
            " (WHERE session <> %s), count(*) FILTER (WHERE session = %s)"
            " FROM tb_reservations WHERE userid = %s", (session, session, userid))
        reserved, others, mine = cursor.fetchone()
        if max_calls and not mine and others >= max_calls:
            raise LimitReached(f"{others} calls in progress already (at most {max_calls}"
                               " at once)")
        available = max(credit - reserved, Decimal(0))
        if daily_cap is not None:
            yield cursor.execute(
                "SELECT coalesce(sum(cost), 0) FROM tb_cdrs WHERE userid = %s"
                " AND starttime >= date_trunc('day', now(), 'UTC')", (userid,))
            left = max(daily_cap - cursor.fetchone()[0] - reserved, Decimal(0))
            if left < max(minimum, cap_minimum) and left < available:
                raise LimitReached(
                    f"the daily spend limit of {daily_cap} is reached ({left} left today,"
                    f" {reserved} held by live calls)")
            available = min(available, left)
        if available < minimum:
            raise InsufficientCredit(
                f"user {userid} has {available} available (credit {credit}, {reserved}"
                f" reserved by live calls), less than the {minimum} this call needs")
        amount = min(wanted, available)
        yield cursor.execute(
            "INSERT INTO tb_reservations (userid, session, amount, node)"
            " VALUES (%s, %s, %s, %s) RETURNING id", (userid, session, amount, node))
        return Reservation(cursor.fetchone()[0], userid, session, amount)

    return run()


def _settle(cursor, userid, session, cdrs, callback):
    @defer.inlineCallbacks
    def run():
        # Lock the payer first, as reserve does: inserting CDRs takes a key-share lock on
        # the user row (the foreign key), and upgrading it later deadlocks two settles.
        credit = None
        if userid is not None:
            yield cursor.execute(
                "SELECT credit FROM tb_user WHERE id = %s FOR NO KEY UPDATE", (userid,))
            row = cursor.fetchone()
            credit = row[0] if row else None
        ids, total = [], Decimal(0)
        for cdr in cdrs:
            values = cdr._values()
            if cdr.id is None:
                yield cursor.execute(
                    f"INSERT INTO tb_cdrs ({', '.join(_CDR_COLUMNS)}, settled)"
                    f" VALUES ({', '.join(map(_placeholder, _CDR_COLUMNS))}, true)"
                    " RETURNING id, cost", values)
            else:
                # Only a still-open row is charged: settling twice charges once.
                assignments = ", ".join(f"{c} = {_placeholder(c)}" for c in _CDR_COLUMNS)
                yield cursor.execute(
                    f"UPDATE tb_cdrs SET {assignments}, settled = true, heartbeat = now()"
                    " WHERE id = %s AND NOT settled RETURNING id, cost", (*values, cdr.id))
            row = cursor.fetchone()
            ids.append(row[0] if row else cdr.id)
            if row is not None:
                total += row[1]
        total = money(total)
        charged = Decimal(0)
        if userid is not None and total > 0:
            if credit is None:
                log.warn("session {session}: user {userid} is gone; {total} not charged",
                         session=session, userid=userid, total=total)
            else:
                charged = total if credit >= total else max(credit, Decimal(0))
                if charged < total:
                    log.warn("session {session}: user {userid} had {credit}, short by"
                             " {shortfall} of {total}; credit stops at 0",
                             session=session, userid=userid, credit=credit,
                             shortfall=total - charged, total=total)
                yield cursor.execute(
                    "UPDATE tb_user SET credit = credit - %s WHERE id = %s", (charged, userid))
        yield cursor.execute("DELETE FROM tb_reservations WHERE session = %s", (session,))
        if callback is not None:
            cbid, status, reason = callback
            yield cursor.execute(
                "UPDATE tb_callbacks SET status = %s, reason = %s, updated = now()"
                " WHERE id = %s", (status, reason, cbid))
        return ids, charged

    return run()


class Ledger:
    """Reserves, charges and records what calls cost."""

    def __init__(self, pool):
        self._pool = pool

    def reserve(self, userid: int, session: str, minimum: Decimal, wanted: Decimal,
                node: str = "", max_calls: int = 0, daily_cap: Decimal | None = None,
                cap_minimum: Decimal = Decimal(0)) -> defer.Deferred:
        """Hold up to ``wanted`` of the user's available credit for ``session``.

        Fails with ``InsufficientCredit`` when less than ``minimum`` is available (credit
        less what other live calls hold) or the user does not exist. Fails with
        ``LimitReached`` when the user holds reservations for ``max_calls`` other sessions
        (0: no limit; a session reserving again is not counted twice), or when the day's
        CDR costs (UTC) and the live calls' reservations leave less than ``minimum`` of
        ``daily_cap`` (and less than the credit does), or less than ``cap_minimum``, what
        the call must be able to spend (such as A's first block); what is held never
        exceeds the cap.
        """
        cap = money(daily_cap) if daily_cap is not None else None
        return self._pool.runInteraction(
            _reserve, userid, session, money(minimum), money(wanted), node, max_calls, cap,
            money(cap_minimum))

    @defer.inlineCallbacks
    def available(self, userid: int):
        """Credit less what live calls reserve, never below 0 (0 for a missing user)."""
        rows = yield self._pool.runQuery(
            "SELECT u.credit - coalesce((SELECT sum(amount) FROM tb_reservations r"
            " WHERE r.userid = u.id), 0) FROM tb_user u WHERE u.id = %s", (userid,))
        return max(rows[0][0], Decimal(0)) if rows else Decimal(0)

    @defer.inlineCallbacks
    def balance(self, userid: int):
        """The user's credit, or None if there is no such user."""
        rows = yield self._pool.runQuery("SELECT credit FROM tb_user WHERE id = %s", (userid,))
        return rows[0][0] if rows else None

    @defer.inlineCallbacks
    def open_cdr(self, cdr: Cdr):
        """Store a live answered leg as unsettled with a heartbeat; fires with its id."""
        rows = yield self._pool.runQuery(
            f"INSERT INTO tb_cdrs ({', '.join(_CDR_COLUMNS)}, settled, heartbeat)"
            f" VALUES ({', '.join(map(_placeholder, _CDR_COLUMNS))}, false, now())"
            " RETURNING id", cdr._values())
        cdr.id = rows[0][0]
        return cdr.id

    def heartbeat(self, cdr_ids: list[int], sessions: list[str]) -> defer.Deferred:
        """Mark these open CDRs and these sessions' reservations as still live."""

        @defer.inlineCallbacks
        def beat(cursor):
            if cdr_ids:
                yield cursor.execute("UPDATE tb_cdrs SET heartbeat = now()"
                                     " WHERE id = ANY(%s) AND NOT settled", (list(cdr_ids),))
            if sessions:
                yield cursor.execute("UPDATE tb_reservations SET heartbeat = now()"
                                     " WHERE session = ANY(%s)", (list(sessions),))

        if not cdr_ids and not sessions:
            return defer.succeed(None)
        return self._pool.runInteraction(beat)

    @defer.inlineCallbacks
    def settle(self, userid: int | None, session: str, cdrs: list[Cdr],
               callback: tuple[int, str, str] | None = None):
        """Write the call's CDRs, charge their cost and drop its reservation, atomically.

        New CDRs (``id`` None) are inserted, open ones closed; only rows that were not
        settled before are charged, so settling again charges nothing more. The charge
        stops credit at 0 (the shortfall is logged). ``callback = (id, status, reason)``
        finishes the callback row in the same transaction. Fires with the amount charged;
        each CDR's ``id`` is set once the transaction has committed.
        """
        ids, charged = yield self._pool.runInteraction(
            _settle, userid, session, list(cdrs), callback)
        for cdr, id in zip(cdrs, ids, strict=True):
            cdr.id = id
        return charged

    @defer.inlineCallbacks
    def unsettled(self, node: str, older_than: float):
        """Open CDRs of ``node``, or of any node whose heartbeat is ``older_than`` s old.

        Their ``endtime`` is the last heartbeat (the answer time when none came): what
        an interrupted leg is billed up to.
        """
        rows = yield self._pool.runQuery(
            f"SELECT {_UNSETTLED_SELECT} FROM tb_cdrs WHERE NOT settled AND (node = %s"
            " OR coalesce(heartbeat, starttime) < now() - %s * interval '1 second')"
            " ORDER BY id", (node, float(older_than)))
        return [Cdr(*r) for r in rows]

    @defer.inlineCallbacks
    def release_stale(self, node: str, older_than: float):
        """Drop reservations of ``node`` or with a heartbeat ``older_than`` s old; count."""
        rows = yield self._pool.runQuery(
            "DELETE FROM tb_reservations WHERE node = %s"
            " OR heartbeat < now() - %s * interval '1 second' RETURNING id",
            (node, float(older_than)))
        return len(rows)
