"""Callback latency: from a request to the A-leg INVITE on the wire, and submit() throughput.

Usage: python bench/callback_latency.py [requests]   (default 200)

Runs a whole mizu in this process (embedded PostgreSQL in a temporary folder, 2 pjsua2
workers, ``callbackdelay`` 0) whose default gateway is a UDP socket of this script: it
notes when each INVITE arrives and answers 486, so every A leg ends at once. Requests
are made at 10/s (below the 15/s per worker that mizu paces call setups to). Prints:
  submit_to_invite_ms    p50 / p99 from ``Dispatcher.submit()`` to the INVITE
  sql_insert_to_invite_ms p50 / p99 from an SQL INSERT of a pending row to the INVITE
  submits_per_second     requests stored per second through submit() (50 at a time)
"""

import os
import re
import shutil
import sys
import tempfile

from twisted.internet import defer, protocol, reactor, task

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mizu.config import load_config  # noqa: E402
from mizu.dispatch.request import CallbackRequest  # noqa: E402
from mizu.tap import build  # noqa: E402
from tests.e2e.peers import free_port  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from http_callbacks import FRAUD_OFF  # noqa: E402

_USER = re.compile(rb"^INVITE sip:([0-9]+)@")


class Gateway(protocol.DatagramProtocol):
    """Notes each INVITE's arrival by A-number and refuses it 486."""

    def __init__(self):
        self.arrived = {}

    def datagramReceived(self, data, addr):
        match = _USER.match(data)
        if match is None:
            return
        self.arrived.setdefault(match.group(1).decode(), reactor.seconds())
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        keep = [h for h in head[1:] if h.split(b":", 1)[0].strip().lower()
                in (b"via", b"from", b"to", b"call-id", b"cseq")]
        keep = [h + b";tag=gw" if h.lower().startswith(b"to:") else h for h in keep]
        reply = b"\r\n".join([b"SIP/2.0 486 Busy Here", *keep, b"Content-Length: 0", b"", b""])
        self.transport.write(reply, addr)


def percentiles(values):
    values = sorted(values)
    return (values[len(values) // 2] * 1000,
            values[min(len(values) - 1, int(len(values) * 0.99))] * 1000)


async def measure(root, gateway, count, make):
    sent = {}
    for i in range(count):
        anum = make.prefix + f"{i:06d}"
        sent[anum] = reactor.seconds()
        await make(anum)
        await task.deferLater(reactor, 0.1, lambda: None)
    deadline = reactor.seconds() + 30
    while len([a for a in sent if a in gateway.arrived]) < count and reactor.seconds() < deadline:
        await task.deferLater(reactor, 0.1, lambda: None)
    waits = [gateway.arrived[a] - t for a, t in sent.items() if a in gateway.arrived]
    return waits, count - len(waits)


async def main(count):
    folder = tempfile.mkdtemp(prefix="mizu-bench-")
    gateway = Gateway()
    gw = reactor.listenUDP(0, gateway, interface="127.0.0.1")
    path = os.path.join(folder, "mizu.ini")
    with open(path, "w") as f:
        f.write(f"[sip]\nlisten = 127.0.0.1:{free_port(2)}\nworkers = 2\nshutdown_grace = 0\n"
                f"default_gateway = sip:{{number}}@127.0.0.1:{gw.getHost().port}\n"
                "[http]\nlisten = tcp:0:interface=127.0.0.1\n"
                "[console]\nlisten = tcp:0:interface=127.0.0.1\n[console.users]\nadmin = pw\n"
                # the gateway answers 486: no redial of a "busy" A may share the pacing
                "[callback]\nmax_attempts = 1\n" + FRAUD_OFF)

    def load():
        return load_config(path, datadir=os.path.join(folder, "var"))

    root = build(load(), load, reactor)
    root.startService()
    try:
        await root.whenReady()
        await root.set_setting("callbackdelay", "0")
        store, dispatcher = root.store, root.dispatcher
        await store.runOperation("INSERT INTO tb_user (username, password, credit) "
                                 "VALUES ('alice', 'wonder', 1000)")
        await task.deferLater(reactor, 2, lambda: None)  # the workers come up

        def by_submit(anum):
            return dispatcher.submit(CallbackRequest(anum=anum, bnum="4420111",
                                                     username="alice", trusted=True))
        by_submit.prefix = "491"

        def by_sql(anum):
            return store.runOperation(
                "INSERT INTO tb_callbacks (userid, anum, bnum, source, status) SELECT id, %s,"
                " '4420111', 'db', 'pending' FROM tb_user WHERE username = 'alice'", (anum,))
        by_sql.prefix = "492"

        for name, make in (("submit_to_invite_ms", by_submit),
                           ("sql_insert_to_invite_ms", by_sql)):
            waits, lost = await measure(root, gateway, count, make)
            p50, p99 = percentiles(waits)
            print(f"{name} p50={p50:.1f} p99={p99:.1f} over {len(waits)} requests"
                  + (f" ({lost} never dialled)" if lost else ""), flush=True)

        await root.set_setting("callbackdelay", "3600")  # stored, not dialled
        began, total = reactor.seconds(), 2000

        async def submitter(first):
            for i in range(first, total, 50):
                await dispatcher.submit(CallbackRequest(anum=f"493{i:06d}", username="alice",
                                                        trusted=True))

        await defer.gatherResults([defer.ensureDeferred(submitter(k)) for k in range(50)])
        rate = total / (reactor.seconds() - began)
        print(f"submits_per_second {rate:.0f} ({total} requests, 50 at a time)", flush=True)
    finally:
        await root.stopService()
        await gw.stopListening()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    task.react(lambda _reactor: defer.ensureDeferred(main(count)))
