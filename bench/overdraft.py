"""200 concurrent calls on one account whose credit covers fewer: does credit go negative?

Starts its own embedded PostgreSQL in a temporary folder, migrates, creates one user, and
fires 200 "calls" at once through a pool of 8 connections. Each call reserves credit
(at least 0.25, at most 0.50), lasts a random while, and settles a cost that is a random
fraction of what it reserved, as a tariff would.

Usage: python bench/overdraft.py
(prints one line: overdraft: 200 calls on credit X: N allowed, final credit Y (>= 0: yes))
"""

import random
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, task, threads  # noqa: E402

from mizu.errors import InsufficientCredit  # noqa: E402
from mizu.store.embedded import EmbeddedPostgres  # noqa: E402
from mizu.store.ledger import Cdr, Ledger, money  # noqa: E402
from mizu.store.migrations import migrate  # noqa: E402
from mizu.store.pool import Pool  # noqa: E402

CALLS = 200
CREDIT = Decimal("30.0000")
MINIMUM, WANTED = Decimal("0.25"), Decimal("0.50")


@defer.inlineCallbacks
def call(reactor, ledger: Ledger, userid: int, n: int, rng: random.Random):
    """One call: reserve, talk for a while, settle; fires with (allowed, charged)."""
    session = f"bench-{n}"
    try:
        reservation = yield ledger.reserve(userid, session, MINIMUM, WANTED, node="bench")
    except InsufficientCredit:
        return False, Decimal(0)
    duration = rng.randint(1, 120)
    # A tenth of a millisecond per call second, so settles interleave with reserves.
    yield task.deferLater(reactor, duration / 10000, lambda: None)
    cost = money(reservation.amount * Decimal(duration) / 120)
    leg = Cdr("B", "4917000000", f"4930{n:06d}", userid=userid, duration=duration,
              billedduration=duration, cost=cost, result="answered", session=session,
              node="bench")
    charged = yield ledger.settle(userid, session, [leg])
    return True, charged


@defer.inlineCallbacks
def main(reactor):
    """Run the bench on a throw-away embedded PostgreSQL and print the one-line result."""
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(tmp)
        dsn = yield threads.deferToThread(server.start)
        pool = None
        try:
            pool = yield Pool(dsn, reactor, size=8).start()
            yield migrate(pool)
            rows = yield pool.runQuery(
                "INSERT INTO tb_user (username, credit) VALUES ('bench', %s) RETURNING id",
                (CREDIT,))
            userid = rows[0][0]
            ledger = Ledger(pool)
            rng = random.Random(20240607)
            results = yield defer.gatherResults(
                [call(reactor, ledger, userid, n, rng) for n in range(CALLS)],
                consumeErrors=True)
            allowed = sum(1 for ok, _ in results if ok)
            charged = sum((c for _, c in results), Decimal(0))
            final = yield ledger.balance(userid)
            if final != CREDIT - charged:
                raise SystemExit(f"credit {final} != {CREDIT} - {charged} charged")
            ok = "yes" if final >= 0 else "NO"
            print(f"overdraft: {CALLS} calls on credit {CREDIT}: {allowed} allowed,"
                  f" final credit {final} (>= 0: {ok})")
        finally:
            if pool is not None:
                pool.close()
            yield threads.deferToThread(server.stop)


if __name__ == "__main__":
    task.react(main)
