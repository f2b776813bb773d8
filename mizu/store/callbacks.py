"""``tb_callbacks``: the callback queue, claimed by dispatchers on any number of nodes."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from mizu.errors import StoreError

IN_FLIGHT = ("calling_a", "ivr", "calling_b", "bridged")
FINAL = ("completed", "failed")
TRIGGERS = ("ani", "sms")  # requests from the caller's own phone: one live per A-number
_LIVE = "status IN ('pending', 'calling_a', 'ivr', 'calling_b', 'bridged')"

_COLUMNS = ("id, userid, anum, bnum, source, status, reason, accessnumber, ivrid, attempts,"
            " authenticated, callerid, extract(epoch FROM created)::float8,"
            " extract(epoch FROM updated)::float8")


@dataclass(frozen=True)
class CallbackRow:
    """One callback request as stored; times are POSIX seconds."""

    id: int
    userid: int | None
    anum: str
    bnum: str
    source: str
    status: str
    reason: str
    accessnumber: str
    ivrid: int
    attempts: int
    authenticated: bool
    callerid: str
    created: float
    updated: float


def _claim(cursor, node: str, limit: int):
    """One transaction: lock due pending rows no other claimer holds, mark them ours."""

    @defer.inlineCallbacks
    def run():
        yield cursor.execute(
            "SELECT id FROM tb_callbacks WHERE status = 'pending' AND due <= now()"
            " ORDER BY due, id LIMIT %s FOR UPDATE SKIP LOCKED", (limit,))
        order = [r[0] for r in cursor.fetchall()]
        if not order:
            return []
        yield cursor.execute(
            "UPDATE tb_callbacks SET status = 'calling_a', node = %s, attempts = attempts + 1,"
            " updated = now(), heartbeat = now()"
            f" WHERE id = ANY(%s) RETURNING {_COLUMNS}", (node, order))
        rows = {r[0]: CallbackRow(*r) for r in cursor.fetchall()}
        return [rows[i] for i in order]

    return run()


_INSERT = ("INSERT INTO tb_callbacks (userid, anum, bnum, source, status, accessnumber, ivrid,"
           " authenticated, callerid, due) VALUES ")
_ROW = "(%s, %s, %s, %s, 'pending', %s, %s, %s, %s, now() + %s * interval '1 second')"


class _Coalesced:
    """Plain inserts, coalesced: while ``MAX_INFLIGHT`` statements run, the rows that
    arrive wait and then go in one multi-row INSERT (at most ``MAX_ROWS``). Under load
    this saves a round trip and most of PostgreSQL's per-statement cost for each row; an
    idle store inserts at once (the next turn of the reactor).

    PostgreSQL returns the ids of ``INSERT ... VALUES ... RETURNING`` in the order of the
    VALUES (Django's bulk_create relies on the same). If a batch fails, its rows are
    inserted one by one, so one bad row fails only its own request.
    """

    MAX_INFLIGHT = 2
    MAX_ROWS = 200

    def __init__(self, pool, clock):
        self._pool = pool
        self._clock = clock
        self._waiting: list[tuple[tuple, defer.Deferred]] = []
        self._inflight = 0
        self._scheduled = None

    def add(self, values: tuple) -> defer.Deferred:
        d = defer.Deferred()
        self._waiting.append((values, d))
        self._kick()
        return d

    def _kick(self):
        if self._scheduled is None and self._waiting and self._inflight < self.MAX_INFLIGHT:
            self._scheduled = self._clock.callLater(0, self._flush)

    def _flush(self):
        self._scheduled = None
        while self._waiting and self._inflight < self.MAX_INFLIGHT:
            batch = self._waiting[:self.MAX_ROWS]
            del self._waiting[:self.MAX_ROWS]
            self._inflight += 1
            self._run(batch).addBoth(self._ran)

    def _ran(self, _):
        self._inflight -= 1
        self._kick()

    def _insert(self, rows: list[tuple]) -> defer.Deferred:
        sql = _INSERT + ", ".join([_ROW] * len(rows)) + " RETURNING id"
        return self._pool.runQuery(sql, [v for row in rows for v in row])

    @defer.inlineCallbacks
    def _run(self, batch):
        try:
            ids = yield self._insert([values for values, _ in batch])
        except Exception:
            if len(batch) == 1:
                batch[0][1].errback()
                return
            for values, d in batch:
                self._insert([values]).addCallback(lambda rows: rows[0][0]).chainDeferred(d)
            return
        for (_, d), (cbid,) in zip(batch, ids, strict=True):
            d.callback(cbid)


class Callbacks:
    """Queues callback requests and moves them through their statuses."""

    def __init__(self, pool, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self._pool = pool
        self._plain = _Coalesced(pool, clock)

    @defer.inlineCallbacks
    def insert(self, *, userid: int | None, anum: str, bnum: str = "", source: str,
               accessnumber: str = "", ivrid: int = 0, authenticated: bool = False,
               callerid: str = "", delay: float = 0.0, same_within: float = 0.0,
               idempotency: tuple[int, str] | None = None):
        """Queue a pending request due ``delay`` seconds from now; fires with its id.

        ``idempotency = (userid, key)``: the claimed ``tb_idempotency`` row gets the new
        id in the same statement, so a commit whose answer is lost with the connection
        still tells a retry with that key which callback it created.

        For the phone triggers (``ani``, ``sms``) an A-number has at most one live
        request: while one is pending or in progress, its id is returned instead. With
        ``same_within``, the id of a request of the same user, source, A and B stored in
        the last ``same_within`` seconds is returned too, whatever its status (an SMSC
        delivering a text again). One statement, unless there is such a row to look up.
        """
        values = (userid, anum, bnum, source, accessnumber, ivrid, authenticated, callerid,
                  float(delay))
        if idempotency is not None and source not in TRIGGERS:
            rows = yield self._pool.runQuery(
                "WITH row AS (" + _INSERT + _ROW + " RETURNING id), done AS ("
                "UPDATE tb_idempotency SET callbackid = (SELECT id FROM row)"
                " WHERE userid = %s AND key = %s) SELECT id FROM row",
                values + tuple(idempotency))
            return rows[0][0]
        if source not in TRIGGERS:
            return (yield self._plain.add(values))
        sql = _INSERT + _ROW
        # userid = %s, not IS NOT DISTINCT FROM: only the former can use the index
        who, who_args = ("userid IS NULL", ()) if userid is None else ("userid = %s", (userid,))
        recent = (f"{who} AND created > now() - %s * interval '1 second' AND source = %s"
                  " AND anum = %s AND bnum = %s")
        recent_args = (*who_args, float(same_within), source, anum, bnum)
        if same_within:
            sql = (_INSERT.replace(" VALUES ", " ") + "SELECT " + _ROW[1:-1]
                   + f" WHERE NOT EXISTS (SELECT 1 FROM tb_callbacks WHERE {recent})")
            values += recent_args
        for _ in range(3):  # the live row may end between the two statements
            rows = yield self._pool.runQuery(
                sql + f" ON CONFLICT (anum) WHERE source IN ('ani', 'sms') AND {_LIVE}"
                " DO NOTHING RETURNING id", values)
            if rows:
                return rows[0][0]
            where, args = (f"anum = %s AND source IN ('ani', 'sms') AND {_LIVE}", (anum,))
            if same_within:
                where, args = f"({where}) OR ({recent})", args + recent_args
            rows = yield self._pool.runQuery(
                f"SELECT id FROM tb_callbacks WHERE {where} ORDER BY id DESC LIMIT 1", args)
            if rows:
                return rows[0][0]
        raise StoreError(f"could not queue a callback for {anum}")

    def claim(self, node: str, limit: int) -> defer.Deferred:
        """Take up to ``limit`` due pending rows for ``node`` (oldest due first).

        Fires with them, already in status ``calling_a`` with ``attempts`` counted. Rows
        another claimer is taking at the same moment are skipped, never shared.
        """
        return self._pool.runInteraction(_claim, node, limit)

    @defer.inlineCallbacks
    def next_due(self):
        """Seconds until the earliest pending row is due (<= 0 if overdue), None if none."""
        rows = yield self._pool.runQuery(
            "SELECT extract(epoch FROM min(due) - now())::float8 FROM tb_callbacks"
            " WHERE status = 'pending'")
        return rows[0][0]

    @defer.inlineCallbacks
    def set_status(self, id: int, status: str, reason: str = "", node: str | None = None):
        """Move a row that is not completed or failed; fires with whether one changed."""
        rows = yield self._pool.runQuery(
            "UPDATE tb_callbacks SET status = %s, reason = %s, node = coalesce(%s, node),"
            " updated = now() WHERE id = %s AND status NOT IN %s RETURNING id",
            (status, reason, node, id, FINAL))
        return bool(rows)

    @defer.inlineCallbacks
    def requeue(self, id: int, delay: float, reason: str, dialled: bool = True):
        """Put an unfinished row back to pending, due in ``delay`` seconds.

        ``dialled=False``: the claim never dialled A (no capacity after all), so it gives
        back the attempt it counted; ``max_attempts`` counts calls to A, not claims.
        Fires with whether a row changed.
        """
        attempts = "attempts" if dialled else "greatest(attempts - 1, 0)"
        rows = yield self._pool.runQuery(
            "UPDATE tb_callbacks SET status = 'pending', reason = %s, node = '',"
            f" attempts = {attempts}, due = now() + %s * interval '1 second',"
            " updated = now(), heartbeat = NULL"
            " WHERE id = %s AND status NOT IN %s RETURNING id",
            (reason, float(delay), id, FINAL))
        return bool(rows)

    @defer.inlineCallbacks
    def get(self, id: int):
        """The row with this id, or None."""
        rows = yield self._pool.runQuery(
            f"SELECT {_COLUMNS} FROM tb_callbacks WHERE id = %s", (id,))
        return CallbackRow(*rows[0]) if rows else None

    @defer.inlineCallbacks
    def recent(self, pending_only: bool, limit: int = 50):
        """The newest ``limit`` rows (only pending ones if asked), newest first."""
        where = "WHERE status = 'pending'" if pending_only else ""
        rows = yield self._pool.runQuery(
            f"SELECT {_COLUMNS} FROM tb_callbacks {where}"
            " ORDER BY created DESC, id DESC LIMIT %s", (limit,))
        return [CallbackRow(*r) for r in rows]

    def heartbeat(self, ids: list[int]) -> defer.Deferred:
        """Mark the in-flight rows among ``ids`` as still being worked on."""
        if not ids:
            return defer.succeed(None)
        return self._pool.runOperation(
            "UPDATE tb_callbacks SET heartbeat = now(), updated = now()"
            " WHERE id = ANY(%s) AND status IN %s", (list(ids), IN_FLIGHT))

    @defer.inlineCallbacks
    def stale(self, node: str, older_than: float):
        """In-flight rows of ``node`` (just restarted), or of any node silent for
        ``older_than`` seconds (heartbeat, else updated): the calls a crash left behind."""
        rows = yield self._pool.runQuery(
            f"SELECT {_COLUMNS} FROM tb_callbacks WHERE status IN %s AND (node = %s"
            " OR coalesce(heartbeat, updated) < now() - %s * interval '1 second')"
            " ORDER BY id", (IN_FLIGHT, node, float(older_than)))
        return [CallbackRow(*r) for r in rows]
