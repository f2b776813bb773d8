"""Hostile input against one live pjsua2 worker: thousands of malformed or mutated SIP
messages over UDP and TCP at a bounded rate.

The messages come from ``random.Random(seed)``, so a run can be repeated exactly. Every
address inside a message that pjsua could send to (the Via line, the SDP c= line) is left
intact by the mutations and names 127.0.0.1 with ``rport``: replies come back to the
sending socket and nothing leaves the loopback interface. ``bench/sip_hostile.py`` runs the
same generator and sender against a bridge at a rate given on its command line.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import globalLogPublisher

from tests.e2e import test_sip
from tests.e2e.peers import sipp, wait_until
from tests.e2e.test_sip import Recorder, finished

mizu = test_sip.mizu  # the shared fixture

ACCESS, UNKNOWN, CALLER = "4930555", "999", "4917012345"
SEED = 20251201
MESSAGES = 2000
# Messages per second, UDP and TCP together. bench/sip_hostile.py measured the rates a
# worker takes without dying (see the report in the test's docstring).
RATE = 100
TCP_SHARE = 0.25
WINDOW = 0.4  # seconds a sender waits for replies
METHODS = ("OPTIONS", "REGISTER", "BYE", "CANCEL", "ACK", "INFO", "UPDATE", "PRACK",
           "MESSAGE", "SUBSCRIBE", "NOTIFY", "REFER")
_STATUS = re.compile(rb"(?m)^SIP/2\.0 (\d{3}) ")


# -- the messages ------------------------------------------------------------------------

def sdp(streams: int = 1) -> str:
    media = "".join(f"m=audio {40000 + 2 * i} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
                    "a=rtpmap:101 telephone-event/8000\r\n" for i in range(streams))
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            + media)


@dataclass
class Message:
    """One SIP request as parts a mutation can change; ``bytes()`` assembles it."""

    start: str
    headers: list[str]
    body: str = ""
    content_length: str | None = None  # None: the body's true length

    def __bytes__(self) -> bytes:
        body = self.body.encode("utf-8", "surrogateescape")
        length = str(len(body)) if self.content_length is None else self.content_length
        head = [self.start, *self.headers]
        if length != "":
            head.append(f"Content-Length: {length}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def request(rng: random.Random, n: int, transport: str, method: str = "INVITE",
            number: str = ACCESS, in_dialog: bool = False) -> Message:
    """A well-formed request from 127.0.0.1 with a fresh Call-ID and branch."""
    uri = f"sip:{number}@127.0.0.1" if method != "REGISTER" else "sip:127.0.0.1"
    tag = f";tag=t{rng.getrandbits(32):08x}" if in_dialog else ""
    headers = [f"Via: SIP/2.0/{transport} 127.0.0.1:9;rport;branch=z9hG4bK{n}x"
               f"{rng.getrandbits(48):012x}",
               f"From: <sip:{CALLER}@127.0.0.1>;tag=f{n}",
               f"To: <sip:{number}@127.0.0.1>{tag}",
               f"Call-ID: hostile-{n}-{rng.getrandbits(32):08x}@127.0.0.1",
               f"CSeq: {rng.randint(1, 9)} {method}",
               f"Contact: <sip:{CALLER}@127.0.0.1:9;transport={transport.lower()}>",
               "Max-Forwards: 70"]
    body = ""
    if method == "INVITE":
        headers.append("Content-Type: application/sdp")
        body = sdp()
    return Message(f"{method} {uri} SIP/2.0", headers, body)


def _protected(data: bytes) -> list[tuple[int, int]]:
    """Byte spans a mutation must not touch: the lines naming where to send replies/media."""
    spans = []
    for m in re.finditer(rb"(?m)^(?:Via:|c=)[^\r\n]*", data):
        spans.append((m.start(), m.end()))
    return spans


def _inside(pos: int, spans) -> tuple[int, int] | None:
    return next(((a, b) for a, b in spans if a <= pos < b), None)


def _non_utf8(rng: random.Random) -> str:
    raw = bytes(rng.choice([0xFF, 0xFE, 0xC0, 0x80, 0xED, 0xF8]) for _ in range(rng.randint(1, 6)))
    return raw.decode("utf-8", "surrogateescape")


def mutate(rng: random.Random, n: int, transport: str) -> tuple[str, bytes]:
    """Message ``n`` of a run: (the kind of damage, the bytes to send)."""
    number = ACCESS if rng.random() < 0.6 else UNKNOWN
    msg = request(rng, n, transport, number=number)
    kind = rng.choice(("valid", "truncate", "flip", "flip", "huge_header", "content_length",
                       "missing_header", "garbage_start", "non_utf8", "many_streams",
                       "version", "crlf_flood", "no_dialog", "no_dialog", "random"))
    if kind == "valid":
        return kind, bytes(msg)
    if kind == "truncate":
        data = bytes(msg)
        cut = rng.randrange(1, len(data))
        span = _inside(cut, _protected(data))
        if span:  # never a half Via or c= line: pjsua might resolve what is left
            cut = span[0] if rng.random() < 0.5 else span[1]
        return kind, data[:cut]
    if kind == "flip":
        data = bytearray(bytes(msg))
        spans = _protected(bytes(data))
        for _ in range(rng.randint(1, 12)):
            pos = rng.randrange(len(data))
            if not _inside(pos, spans) and data[pos:pos + 1] not in (b"\r", b"\n"):
                data[pos] = rng.randrange(256)
        return kind, bytes(data)
    if kind == "huge_header":
        limit = 60_000 if transport == "TCP" else 8_000
        if rng.random() < 0.5:
            msg.headers.insert(rng.randint(1, len(msg.headers)),
                               "X-Pad: " + "a" * rng.randint(1000, limit))
        else:
            count = rng.randint(50, limit // 40)
            msg.headers[1:1] = [f"X-H{i}: {'v' * 20}" for i in range(count)]
        return kind, bytes(msg)
    if kind == "content_length":
        real = len(msg.body)
        msg.content_length = rng.choice(["999999", "-1", "abc", "", "0", "4294967296",
                                         str(real + rng.randint(1, 500)),
                                         str(max(0, real - rng.randint(1, real))),
                                         " 12 34", "0x10"])
        return kind, bytes(msg)
    if kind == "missing_header":
        names = ("Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Contact",
                 "Content-Type")
        drop = rng.sample(names, rng.randint(1, 3))
        msg.headers = [h for h in msg.headers if h.split(":")[0] not in drop]
        return kind, bytes(msg)
    if kind == "garbage_start":
        msg.start = rng.choice([
            "".join(chr(rng.randrange(33, 127)) for _ in range(rng.randint(1, 80))),
            "INVITE", "INVITE sip: SIP/2.0", "INVITE  SIP/2.0", f"INVITE sip:{number}@127.0.0.1",
            "SIP/2.0 200 OK", "SIP/2.0 999 Whatever", "SIP/2.0 abc", " INVITE sip:x SIP/2.0",
            "GET / HTTP/1.1", f"INVITE <sip:{number}@127.0.0.1> SIP/2.0",
            f"INV\x00ITE sip:{number}@127.0.0.1 SIP/2.0"])
        return kind, bytes(msg)
    if kind == "non_utf8":
        junk = _non_utf8(rng)
        where = rng.randrange(5)
        if where == 0:
            msg.headers[1] = f'From: "Bj{junk}rn" <sip:{CALLER}@127.0.0.1>;tag=f{n}'
        elif where == 1:
            msg.headers[3] = msg.headers[3].replace("@", f"{junk}@")
        elif where == 2:
            msg.headers.append(f"Subject: {junk}{junk}")
        elif where == 3:
            msg.start = msg.start.replace(f"sip:{number}", f"sip:{number}{junk}")
        else:
            msg.body = msg.body.replace("s=-", f"s={junk}")
        return kind, bytes(msg)
    if kind == "many_streams":
        msg.body = sdp(rng.choice([2, 3, 16, 16, 32]))
        return kind, bytes(msg)
    if kind == "version":
        version = rng.choice(["SIP/3.0", "SIP/1.0", "SIP/2.1", "sip/2.0", "HTTP/1.1", "SIP/",
                              "SIP/2.0.0", "SIP/99999999999999999999.0"])
        msg.start = msg.start.rsplit(" ", 1)[0] + " " + version
        return kind, bytes(msg)
    if kind == "crlf_flood":
        flood = b"\r\n" * rng.randint(1, 2000 if transport == "TCP" else 600)
        return kind, flood + (bytes(msg) if rng.random() < 0.5 else b"")
    if kind == "no_dialog":
        method = rng.choice(METHODS)
        other = request(rng, n, transport, method=method, number=number,
                        in_dialog=method not in ("OPTIONS", "REGISTER", "MESSAGE"))
        return kind, bytes(other)
    return kind, rng.randbytes(rng.randint(1, 1400))


def messages(seed: int, count: int, tcp_share: float = TCP_SHARE):
    """``count`` (kind, transport, bytes) triples, the same ones for the same seed."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        transport = "TCP" if rng.random() < tcp_share else "UDP"
        kind, data = mutate(rng, n, transport)
        out.append((kind, transport, data))
    return out


# -- sending and counting ------------------------------------------------------------------

def outcome(replies: bytes | list[bytes]) -> str:
    """What came back: the final response's class (``4xx``), ``1xx`` if only provisional,
    ``other`` for non-SIP bytes (a CRLF pong), ``refused`` or ``none``."""
    data = b"".join(replies) if isinstance(replies, list) else replies
    codes = [int(c) for c in _STATUS.findall(data)]
    final = next((c for c in codes if c >= 200), None)
    if final is not None:
        return f"{final // 100}xx"
    if codes:
        return "1xx"
    return "other" if data.strip() else "none"


class _UdpProbe(protocol.DatagramProtocol):
    def __init__(self):
        self.replies = []

    def datagramReceived(self, data, addr):
        self.replies.append(data)


class _TcpProbe(protocol.Protocol):
    def __init__(self, payload: bytes):
        self.payload, self.data = payload, b""

    def connectionMade(self):
        self.transport.write(self.payload)

    def dataReceived(self, data):
        self.data += data


async def _pause(seconds):
    await task.deferLater(reactor, seconds, lambda: None)


async def send_udp(port: int, payload: bytes, window: float = WINDOW) -> str:
    probe = _UdpProbe()
    listening = reactor.listenUDP(0, probe, interface="127.0.0.1")
    try:
        listening.write(payload, ("127.0.0.1", port))
    except OSError:
        await listening.stopListening()
        return "refused"
    await _pause(window)
    await listening.stopListening()
    return outcome(probe.replies)


async def send_tcp(port: int, payload: bytes, window: float = WINDOW) -> str:
    probe = _TcpProbe(payload)
    try:
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=1), probe)
    except Exception:
        return "refused"
    await _pause(window)
    probe.transport.abortConnection()
    return outcome(probe.data)


@dataclass
class Run:
    """What a hostile run saw."""

    sent: int = 0
    outcomes: Counter = field(default_factory=Counter)
    by_kind: dict = field(default_factory=dict)
    restarts: int = 0
    seconds_down: float = 0.0
    seconds: float = 0.0
    sent_at: list = field(default_factory=list)  # (time, index) of every message sent
    crashes: list = field(default_factory=list)  # times the worker was first seen down

    def line(self) -> str:
        classes = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return (f"messages={self.sent} rate={self.sent / max(self.seconds, 1e-9):.0f}/s "
                f"responses: {classes} worker_restarts={self.restarts} "
                f"seconds_down={self.seconds_down:.1f}")


class WorkerWatch:
    """Polls one worker of a bridge: how often its pid changed, how long it was down."""

    def __init__(self, bridge, index: int = 0, interval: float = 0.02):
        self._bridge, self._index, self._interval = bridge, index, interval
        self.pids: list[int] = []
        self.seconds_down = 0.0
        self.went_down: list[float] = []
        self._was_up = True
        self._loop = task.LoopingCall(self._tick)
        self._last = None

    def start(self):
        self._last = reactor.seconds()
        self._loop.start(self._interval)

    def stop(self):
        self._tick()
        if self._loop.running:
            self._loop.stop()

    def _tick(self):
        now = reactor.seconds()
        worker = self._bridge.workers.get(self._index)
        up = worker is not None and worker.alive
        if not up:
            self.seconds_down += now - self._last
            if self._was_up:
                self.went_down.append(now)
        self._was_up = up
        if up and (not self.pids or self.pids[-1] != worker.pid):
            self.pids.append(worker.pid)
        self._last = now

    @property
    def restarts(self) -> int:
        return max(0, len(self.pids) - 1)


async def hammer(bridge, port: int, batch, rate: float, window: float = WINDOW) -> Run:
    """Send ``batch`` to ``port`` at ``rate`` messages/s; count what came back."""
    watch = WorkerWatch(bridge)
    watch.start()
    run = Run()
    began = reactor.seconds()
    pending = []

    def record(result, kind):
        run.outcomes[result] += 1
        run.by_kind.setdefault(kind, Counter())[result] += 1

    for i, (kind, transport, payload) in enumerate(batch):
        delay = began + i / rate - reactor.seconds()
        if delay > 0:
            await _pause(delay)
        send = send_tcp if transport == "TCP" else send_udp
        d = defer.ensureDeferred(send(port, payload, window))
        d.addCallback(record, kind)
        pending.append(d)
        run.sent += 1
        run.sent_at.append((reactor.seconds(), i))
    await defer.gatherResults(pending, consumeErrors=True)
    run.seconds = reactor.seconds() - began
    watch.stop()
    run.restarts, run.seconds_down = watch.restarts, watch.seconds_down
    run.crashes = watch.went_down
    return run


# -- the test --------------------------------------------------------------------------------

class RecordingCore(Recorder):
    """Records every call that gets through triage, and refuses it (never answers)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def inboundCall(self, leg, invite, access, caller):
        self.calls.append((leg, invite))
        leg.reject(403, "Recorded")


@pytest.mark.parametrize("transport,count,tcp_share", [("udp", MESSAGES, 0.0),
                                                      ("tcp", 500, 1.0)])
@pytest_twisted.ensureDeferred
async def test_a_worker_survives_hostile_messages(mizu, transport, count, tcp_share):
    """2,000 malformed or mutated SIP messages over UDP, then 500 over TCP, each on a new
    connection (truncated, byte-flipped, 60 KB headers, bad Content-Length, missing headers,
    garbage start lines, non-UTF-8, 16 m=audio, wrong versions, CRLF floods, requests outside
    any dialog, random bytes) at 100/s: the controller lives, nothing reaches the core,
    every leg is let go, and the worker then answers a valid SIPp call.

    Over UDP the worker is never replaced. Over TCP the wheel's pjsua2 keeps each closed
    connection's socket for about 33 s in a 64-handle table and aborts when it runs out
    (a limit of the wheel, documented in the README; a rebuilt engine has 8192): there the
    test pins that hostile input cannot stretch the restart delay, each crash costing at
    most about a second."""
    core = RecordingCore()
    mizu.sip.incoming_handler.core = core
    unhandled = []

    def observe(event):
        text = str(event.get("log_format", "")) + str(event.get("log_text", ""))
        if "Unhandled" in text:
            unhandled.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        batch = messages(SEED, count, tcp_share)
        pid = mizu.sip.workers[0].pid
        run = await hammer(mizu.sip, mizu.sip_port, batch, RATE)
        print(f"\nhostile {transport}: {run.line()}")
        for kind, seen in sorted(run.by_kind.items()):
            print(f"  {kind}: {dict(seen)}")
        assert run.sent == count
        assert run.seconds < count / RATE + 5, run.line()  # the rate held
        assert run.outcomes["4xx"] > count // 20, run.line()  # the messages did reach pjsua
        assert core.calls == [], core.calls
        if transport == "udp":
            assert run.restarts == 0 and mizu.sip.workers[0].pid == pid, run.line()
        else:
            assert run.seconds_down <= 1.5 * max(1, run.restarts), run.line()
        await wait_until(lambda: mizu.sip.workers[0].alive, what="the worker")
        await wait_until(lambda: not mizu.sip.legs, what="every hostile leg's end",
                         timeout=15)
        await finished(sipp("uac_404.xml", "-s", UNKNOWN,
                            target=f"127.0.0.1:{mizu.sip_port}"))
        assert unhandled == []
    finally:
        globalLogPublisher.removeObserver(observe)
