"""``tb_idempotency``: which callback an API client's ``Idempotency-Key`` created."""

from __future__ import annotations

from twisted.internet import defer

STALE = 60  # seconds after which a claim without a callback is abandoned


class Idempotency:
    """Claims a key for a request before it is stored, so a retry never stores twice."""

    def __init__(self, pool):
        self._pool = pool

    @defer.inlineCallbacks
    def claim(self, userid: int, key: str, request: str):
        """(True, None) when the key is new and now ours; else (False, (request, callbackid))
        as first stored (callbackid None while that request is still being stored).

        A claim that never got its callback within ``STALE`` seconds (its request failed
        and the release was lost with the database) is taken over, so the key is not
        answered 409 for ever."""
        rows = yield self._pool.runQuery(
            "INSERT INTO tb_idempotency (userid, key, request) VALUES (%s, %s, %s)"
            " ON CONFLICT (userid, key) DO UPDATE SET request = EXCLUDED.request,"
            " created = now() WHERE tb_idempotency.callbackid IS NULL"
            " AND tb_idempotency.created < now() - %s * interval '1 second'"
            " RETURNING key", (userid, key, request, STALE))
        if rows:
            return True, None
        rows = yield self._pool.runQuery(
            "SELECT request, callbackid FROM tb_idempotency WHERE userid = %s AND key = %s",
            (userid, key))
        if not rows:  # released meanwhile: try once more
            return (yield self.claim(userid, key, request))
        return False, tuple(rows[0])

    def release(self, userid: int, key: str):
        """Forget a key whose request was refused, so that it can be sent again."""
        return self._pool.runOperation(
            "DELETE FROM tb_idempotency WHERE userid = %s AND key = %s AND callbackid IS NULL",
            (userid, key))
