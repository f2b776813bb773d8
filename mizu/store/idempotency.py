"""``tb_idempotency``: which callback an API client's ``Idempotency-Key`` created."""

from __future__ import annotations

from twisted.internet import defer


class Idempotency:
    """Claims a key for a request before it is stored, so a retry never stores twice."""

    def __init__(self, pool):
        self._pool = pool

    @defer.inlineCallbacks
    def claim(self, userid: int, key: str, request: str, window: float | None = None):
        """(True, None) when the key is new and now ours; else (False, (request, callbackid))
        as first stored (callbackid None while that request is still being stored).

        With ``window``, a key stored (and completed) more than ``window`` seconds ago is
        forgotten first: the same text sent again later is a new request."""
        if window is not None:
            yield self._pool.runOperation(
                "DELETE FROM tb_idempotency WHERE userid = %s AND key = %s AND callbackid IS"
                " NOT NULL AND created < now() - %s * interval '1 second'",
                (userid, key, window))
        rows = yield self._pool.runQuery(
            "INSERT INTO tb_idempotency (userid, key, request) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING key", (userid, key, request))
        if rows:
            return True, None
        rows = yield self._pool.runQuery(
            "SELECT request, callbackid FROM tb_idempotency WHERE userid = %s AND key = %s",
            (userid, key))
        if not rows:  # released meanwhile: try once more
            return (yield self.claim(userid, key, request, window))
        return False, tuple(rows[0])

    def complete(self, userid: int, key: str, callbackid: int):
        """Record the callback the key's request created."""
        return self._pool.runOperation(
            "UPDATE tb_idempotency SET callbackid = %s WHERE userid = %s AND key = %s",
            (callbackid, userid, key))

    def release(self, userid: int, key: str):
        """Forget a key whose request was refused, so that it can be sent again."""
        return self._pool.runOperation(
            "DELETE FROM tb_idempotency WHERE userid = %s AND key = %s AND callbackid IS NULL",
            (userid, key))
