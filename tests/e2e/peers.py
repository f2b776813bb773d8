"""Real peers for SIP tests: SIPp processes, RTP sockets, free ports."""

from __future__ import annotations

import datetime
import functools
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys

from twisted.internet import defer, protocol, reactor, task

from mizu.sip.engine import calls_allowed

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "sipp")


def free_port(count: int = 1) -> int:
    """A port p such that p .. p+count-1 are free for both UDP and TCP on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            held = []
            for port in range(base, base + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(socket.AF_INET, kind)
                    held.append(s)
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError("no free port")


class RawClient(protocol.Protocol):
    """A bare TCP client: writes what it is told, keeps what it gets; ``closed`` fires with
    all it got once the connection is gone."""

    def __init__(self):
        self.received = b""
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(self.received)


class SippProcess(protocol.ProcessProtocol):
    """One SIPp run; ``done`` fires with (exit code, output)."""

    def __init__(self):
        self.output = b""
        self.done = defer.Deferred()

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.done.callback((reason.value.exitCode, self.output.decode("utf-8", "replace")))

    def kill(self):
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass


def sipp(scenario: str, *args: str, target: str | None = None, port: int | None = None,
         timeout: int = 20) -> SippProcess:
    """Start SIPp with a scenario from tests/sipp; it exits 0 when its call succeeded."""
    binary = shutil.which("sipp")
    assert binary, "SIPp is missing: ./run-tests installs the Debian package sip-tester"
    argv = [binary] + ([target] if target else []) + [
        "-sf", os.path.join(SCENARIOS, scenario), "-m", "1", "-i", "127.0.0.1",
        "-p", str(port or free_port()), "-mp", str(free_port()), "-nostdin",
        "-timeout", f"{timeout}s", "-timeout_error", *args]
    proc = SippProcess()
    reactor.spawnProcess(proc, binary, argv, env=os.environ.copy())
    return proc


_ENGINE_PROBE = """
import ctypes, pjsua2 as pj
ep = pj.Endpoint()
ep.libCreate()
config = pj.EpConfig()
config.uaConfig.threadCnt = 0
config.uaConfig.mainThreadOnly = True
config.uaConfig.maxCalls = 1 << 20
config.logConfig.level = config.logConfig.consoleLevel = 0
ep.libInit(config)
print("max_calls", ctypes.CDLL(pj._pjsua2.__file__).pjsua_call_get_max_count())
ep.libDestroy()
"""


@functools.cache
def engine_max_calls() -> int:
    """The most calls the installed pjsua2 holds per worker (its ``PJSUA_MAX_CALLS``: 4 in
    the PyPI wheel, 1024 built by tools/build-engine), asked of the engine in a process of
    its own with the Python the workers run on."""
    out = subprocess.run([sys.executable, "-c", _ENGINE_PROBE], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return int(next(line for line in out.splitlines() if line.startswith("max_calls "))
               .split()[1])


def worker_capacity(share: int) -> int:
    """What a worker given ``share`` of ``[sip] max_calls`` reports on the installed engine
    (it raises its open-file limit to the hard one, which bounds its calls too)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return min(share, engine_max_calls(), calls_allowed(hard))


def ulaw_magnitude(byte: int) -> int:
    """The linear magnitude of one G.711 u-law sample."""
    u = ~byte & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    return (((mantissa << 3) + 0x84) << exponent) - 0x84


class RtpPeer(protocol.DatagramProtocol):
    """A UDP socket standing in for a phone's media: counts loud PCMU packets, sends a tone."""

    def __init__(self):
        self.packets: list[bytes] = []
        self.received_at: list[float] = []  # reactor time of each packet in ``packets``
        self.remote = None
        self._seq = 0
        self._sender = None

    @classmethod
    def listen(cls) -> tuple[RtpPeer, int]:
        peer = cls()
        port = reactor.listenUDP(0, peer, interface="127.0.0.1")
        peer.port = port
        return peer, port.getHost().port

    def datagramReceived(self, data, addr):
        self.remote = addr
        self.packets.append(data)
        self.received_at.append(reactor.seconds())

    def loud_packets(self, since: float | None = None) -> int:
        """Packets of PCMU (payload type 0) with a clearly audible signal in them (only
        those received after reactor time ``since``, when given)."""
        return sum(1 for at in self.loud_times() if since is None or at >= since)

    def loud_times(self) -> list[float]:
        """When each loud PCMU packet arrived (reactor time)."""
        times = []
        for packet, at in zip(self.packets, self.received_at, strict=True):
            if len(packet) < 12 or packet[1] & 0x7F != 0:
                continue
            samples = packet[12:]
            if sum(1 for b in samples if ulaw_magnitude(b) > 2000) > len(samples) // 4:
                times.append(at)
        return times

    def telephone_events(self, payload_type: int = 120) -> list[int]:
        """The RFC 2833 event codes received, once per event (0-9 are the digits)."""
        events = []
        for packet in self.packets:
            if len(packet) >= 16 and packet[1] & 0x7F == payload_type:
                event, timestamp = packet[12], packet[4:8]
                if (event, timestamp) not in events:
                    events.append((event, timestamp))
        return [event for event, _ in events]

    def start_tone(self):
        """Send a loud 500 Hz square wave in PCMU, 50 packets a second, to the far end."""
        payload = (bytes([0x80]) * 8 + bytes([0x00]) * 8) * 10

        def send():
            if self.remote is None:
                return
            self._seq += 1
            header = struct.pack("!BBHII", 0x80, 0, self._seq & 0xFFFF,
                                 (self._seq * 160) & 0xFFFFFFFF, 0x6D697A75)
            self.transport.write(header + payload, self.remote)

        self._sender = task.LoopingCall(send)
        self._sender.start(0.02)

    async def send_digits(self, digits: str, payload_type: int = 120) -> None:
        """Send ``digits`` (0-9, *, #) to the far end as RFC 2833 telephone-events: per
        digit 5 updates and 3 end packets 20 ms apart, then 60 ms of pause."""
        assert self.remote is not None, "no RTP from the far end yet: address unknown"
        codes = {**{str(n): n for n in range(10)}, "*": 10, "#": 11}
        timestamp = 8000
        for digit in digits:
            for n in range(1, 9):
                self._seq += 1
                marker = 0x80 if n == 1 else 0
                header = struct.pack("!BBHII", 0x80, marker | payload_type, self._seq & 0xFFFF,
                                     timestamp, 0x64746D66)
                end = 0x80 if n > 5 else 0
                payload = struct.pack("!BBH", codes[digit], end | 10, 160 * min(n, 5))
                self.transport.write(header + payload, self.remote)
                await task.deferLater(reactor, 0.02, lambda: None)
            timestamp += 160 * 8
            await task.deferLater(reactor, 0.06, lambda: None)

    def stop_tone(self):
        if self._sender is not None and self._sender.running:
            self._sender.stop()

    def close(self):
        self.stop_tone()
        return self.port.stopListening()


async def wait_until(check, timeout: float = 10.0, what: str = "condition"):
    """Poll ``check()`` on the real clock (real peers run in real time)."""
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.05, lambda: None)


def port_in_use(port: int) -> bool:
    """Whether something (a SIPp peer) has bound UDP ``port`` on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


async def listening(port: int, timeout: float = 5.0):
    """Wait until a SIPp peer started on ``port`` is ready to receive."""
    await wait_until(lambda: port_in_use(port), timeout, f"a SIP peer on port {port}")


def sip_messages(path, times: bool = False) -> list[tuple]:
    """What a SIPp run with ``-trace_msg -message_file <path>`` sent and received, in order:
    (``sent`` or ``received``, the message text with LF line ends), and with ``times`` the
    POSIX time SIPp logged it at as a third item."""
    messages = []
    with open(path, encoding="utf-8", errors="replace") as f:
        chunks = f.read().split("----------------------------------------------- ")
    for chunk in chunks:
        head, _, body = chunk.partition("\n\n")
        if " message sent" in head or " message received" in head:
            kind = "sent" if " message sent" in head else "received"
            entry = (kind, body.replace("\r\n", "\n").strip("\n"))
            if times:  # SIPp writes its local time
                stamp = datetime.datetime.fromisoformat(head.split("\n", 1)[0].strip())
                entry += (stamp.timestamp(),)
            messages.append(entry)
    return messages


def sip_header(message: str, name: str) -> str:
    """The value of the first header ``name`` (case-insensitive) in a SIP message."""
    for line in message.split("\n")[1:]:
        if not line.strip():
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""
