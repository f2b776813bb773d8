"""200 concurrent callbacks on one account whose credit covers fewer: is there an overdraft?

Runs the real dispatcher, call sessions, IVR and billing against an embedded PostgreSQL
in a temporary folder; only the legs are fake (mizu.sip.fake, on the real clock): every A
and B answers at once, and B hangs up after a random 1-4 s unless the credit cut comes
first. All 200 requests are submitted at once for one user. Prints one line:
  overdraft: 200 calls on credit X: N connected, M refused for credit, final credit Y (>= 0: yes)

Usage: python bench/overdraft.py
"""

import os
import random
import shutil
import sys
import tempfile
from decimal import Decimal

from twisted.internet import defer, reactor, task

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mizu.config import (  # noqa: E402
    CallbackConfig,
    Config,
    DatabaseConfig,
    FraudConfig,
    IvrConfig,
    SipConfig,
)
from mizu.dispatch.dispatcher import Dispatcher  # noqa: E402
from mizu.dispatch.request import CallbackRequest  # noqa: E402
from mizu.service import MizuService  # noqa: E402
from mizu.sip.fake import FakeTelephony  # noqa: E402
from mizu.store.service import StoreService  # noqa: E402

CALLS = 200
CREDIT = Decimal("20.0000")


class Far:
    """Answers every leg; hangs B up after a while."""

    def __init__(self, fake, rng):
        self.fake, self.rng = fake, rng
        self.seen = set()

    def tick(self):
        for leg in list(self.fake.legs.values()):
            if leg.id in self.seen:
                continue
            self.seen.add(leg.id)
            leg.far_rings()
            reactor.callLater(0.01, leg.far_answers)
            if leg.uri.startswith("sip:44"):
                reactor.callLater(0.01 + self.rng.uniform(1, 4), leg.far_hangs_up)


async def main():
    folder = tempfile.mkdtemp(prefix="mizu-overdraft-")
    config = Config(database=DatabaseConfig(datadir=os.path.join(folder, "var")),
                    sip=SipConfig(default_gateway="sip:{number}@127.0.0.1:5999"),
                    ivr=IvrConfig(scripts=os.path.join(folder, "ivr")),
                    callback=CallbackConfig(ring_timeout=30),
                    # 200 calls at once on one account is the point: guards off
                    fraud=FraudConfig(max_calls_per_user=0, callbacks_per_hour=0,
                                      anumber_per_hour=0, daily_spend=0))
    os.mkdir(os.path.join(folder, "ivr"))
    fake = FakeTelephony(capacity=2 * CALLS + 10, clock=reactor)
    root = MizuService(config, lambda: config, reactor)
    StoreService(config.database, reactor, pool_size=8).setServiceParent(root)
    dispatcher = Dispatcher(root, fake, reactor)
    dispatcher.setServiceParent(root)
    root.startService()
    far = Far(fake, random.Random(7))
    loop = task.LoopingCall(far.tick)
    try:
        await root.whenReady()
        store = root.store
        await root.set_setting("callbackdelay", "0")
        await store.runOperation("INSERT INTO tb_user (username, credit) VALUES ('bob', %s)",
                                 (CREDIT,))
        # B costs 0.60/min by the second after a 1 s block, plus 0.05 to connect; A is free.
        await store.runOperation("INSERT INTO tb_rates (prefix, price, initblock, increment,"
                                 " connectfee) VALUES ('44', 0.60, 1, 1, 0.05)")
        await root.reload()
        loop.start(0.02)
        ids = await defer.gatherResults([
            defer.ensureDeferred(dispatcher.submit(CallbackRequest(
                anum=f"4917{n:06d}", bnum="4420111", username="bob", trusted=True)))
            for n in range(CALLS)])
        while True:
            rows = await store.runQuery(
                "SELECT count(*) FILTER (WHERE status IN ('completed', 'failed')) FROM "
                "tb_callbacks WHERE id = ANY(%s)", (ids,))
            if rows[0][0] == CALLS:
                break
            await task.deferLater(reactor, 0.2, lambda: None)
        connected = (await store.runQuery(
            "SELECT count(*) FROM tb_cdrs WHERE leg = 'B' AND answertime IS NOT NULL"))[0][0]
        refused = (await store.runQuery(
            "SELECT count(*) FROM tb_callbacks WHERE reason = 'insufficient credit'"))[0][0]
        credit = (await store.runQuery("SELECT credit FROM tb_user WHERE username = 'bob'"))[0][0]
        charged = (await store.runQuery("SELECT coalesce(sum(cost), 0) FROM tb_cdrs"))[0][0]
        left = (await store.runQuery("SELECT count(*) FROM tb_reservations"))[0][0]
        exact = "yes" if credit == CREDIT - charged else f"no: {CREDIT} - {charged} != {credit}"
        print(f"overdraft: {CALLS} calls on credit {CREDIT}: {connected} connected, "
              f"{refused} refused for credit, final credit {credit} "
              f"(>= 0: {'yes' if credit >= 0 else 'NO'}; equals credit - CDR costs: {exact}; "
              f"reservations left: {left})", flush=True)
    finally:
        if loop.running:
            loop.stop()
        await root.stopService()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    task.react(lambda _reactor: defer.ensureDeferred(main()))
