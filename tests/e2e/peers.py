"""Real peers for SIP tests: SIPp processes, RTP sockets, free ports."""

from __future__ import annotations

import os
import shutil
import socket
import struct

from twisted.internet import defer, protocol, reactor, task

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


def ulaw_magnitude(byte: int) -> int:
    """The linear magnitude of one G.711 u-law sample."""
    u = ~byte & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    return (((mantissa << 3) + 0x84) << exponent) - 0x84


class RtpPeer(protocol.DatagramProtocol):
    """A UDP socket standing in for a phone's media: counts loud PCMU packets, sends a tone."""

    def __init__(self):
        self.packets: list[bytes] = []
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

    def loud_packets(self) -> int:
        """Packets of PCMU (payload type 0) with a clearly audible signal in them."""
        loud = 0
        for packet in self.packets:
            if len(packet) < 12 or packet[1] & 0x7F != 0:
                continue
            samples = packet[12:]
            if sum(1 for b in samples if ulaw_magnitude(b) > 2000) > len(samples) // 4:
                loud += 1
        return loud

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
