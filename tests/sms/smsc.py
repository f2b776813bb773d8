"""A real SMSC for SMS tests: tests/sms/smsc.pl (Perl Net::SMPP) driven from the reactor.

The protocol of commands and events is documented at the top of smsc.pl.
"""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import defer, error, protocol
from twisted.internet import reactor as global_reactor

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smsc.pl")

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                 "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}


class SmscError(Exception):
    """The SMSC refused a command, died, or did not report an awaited event in time."""


def gsm_hex(text: str) -> str:
    """``text`` in the GSM 03.38 default alphabet, one septet per octet (unpacked), as hex."""
    octets = bytearray()
    for char in text:
        if char in GSM_EXTENSION:
            octets += bytes((0x1B, GSM_EXTENSION[char]))
        elif char in GSM_BASIC and char != "\x1b":
            octets.append(GSM_BASIC.index(char))
        else:
            raise ValueError(f"{char!r} is not in the GSM default alphabet")
    return octets.hex()


def ucs2_hex(text: str) -> str:
    """``text`` in UCS-2 (UTF-16 big-endian, data_coding 8), as hex."""
    return text.encode("utf-16-be").hex()


def latin1_hex(text: str) -> str:
    """``text`` in ISO-8859-1 (data_coding 3), as hex."""
    return text.encode("latin-1").hex()


def udh_parts(text: str, ref: int, size: int, coding: str = "gsm") -> list[tuple[int, str]]:
    """``text`` cut into parts of ``size`` characters, each as (esm_class 0x40, hex of a
    concatenation UDH with the 8-bit reference ``ref`` followed by the part in ``coding``,
    "gsm" or "ucs2")."""
    encode = {"gsm": gsm_hex, "ucs2": ucs2_hex}[coding]
    chunks = [text[i:i + size] for i in range(0, len(text), size)] or [""]
    if len(chunks) > 255:
        raise ValueError("more than 255 parts")
    return [(0x40, bytes((0x05, 0x00, 0x03, ref & 0xFF, len(chunks), number)).hex()
             + encode(chunk))
            for number, chunk in enumerate(chunks, 1)]


class _SmscProcess(protocol.ProcessProtocol):
    """Splits smsc.pl's stdout into lines for its Smsc."""

    def __init__(self, smsc: Smsc):
        self._smsc = smsc
        self._buffer = b""
        self.stderr = b""

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._smsc._line_received(line.decode("utf-8", "replace"))

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason) -> None:
        self._smsc._process_ended(reason)


class Smsc:
    """One smsc.pl process on 127.0.0.1: start it, send it commands, await its events.

    ``events`` holds every event seen, in order; ``wait_for`` hands each one out once.
    """

    def __init__(self, port: int = 0, reactor=None, script: str = SCRIPT):
        self.port = port
        self.events: list[dict] = []
        self._reactor = reactor or global_reactor
        self._script = script
        self._consumed: list[bool] = []
        self._waiters: list[tuple[str, dict, defer.Deferred]] = []
        self._listening: defer.Deferred | None = None
        self._exit_waiters: list[defer.Deferred] = []
        self._exited = False
        self._process = _SmscProcess(self)
        self._transport = None

    async def start(self, timeout: float = 10) -> Smsc:
        """Spawn the SMSC and wait until it listens; ``port`` is then the real port."""
        perl = shutil.which("perl")
        assert perl, "perl is missing"
        self._listening = defer.Deferred()
        self._transport = self._reactor.spawnProcess(
            self._process, perl, [perl, self._script, str(self.port)], env=os.environ.copy())
        self._listening.addTimeout(timeout, self._reactor)
        try:
            await self._listening
        except defer.TimeoutError:
            self.kill()
            raise SmscError(f"smsc.pl did not listen: {self.stderr}") from None
        return self

    @property
    def stderr(self) -> str:
        """What smsc.pl wrote on stderr so far (Perl warnings, for diagnosis)."""
        return self._process.stderr.decode("utf-8", "replace")

    def send(self, command_line: str) -> None:
        """Write one command line to the SMSC without waiting for its answer."""
        if self._exited:
            raise SmscError(f"smsc.pl has exited; cannot send {command_line!r}")
        self._transport.write(command_line.encode("utf-8") + b"\n")

    async def command(self, command_line: str, timeout: float = 10) -> dict:
        """Send a command and wait for its ``ok`` event (returned); raise SmscError on its
        ``error`` event."""
        name = command_line.split()[0]
        self.send(command_line)
        answer = await self._wait(lambda e: e.get("event") in ("ok", "error")
                                  and e.get("command") == name, timeout, f"answer to {name}")
        if answer["event"] == "error":
            raise SmscError(f"{command_line!r}: {answer.get('reason')}")
        return answer

    async def deliver(self, source: str, destination: str, short_message_hex: str,
                      esm_class: int = 0, data_coding: int = 0, seq: int | None = None,
                      **tlvs: str) -> int:
        """Send a deliver_sm (TLVs by Net::SMPP name, values in hex); returns its sequence
        number, to await ``wait_for("deliver_sm_resp", seq=...)``."""
        options = "".join(f" {name}={value}" for name, value in tlvs.items())
        answer = await self.command(
            f"deliver {'-' if seq is None else seq} {source} {destination} {esm_class}"
            f" {data_coding} {short_message_hex or '-'}{options}")
        return answer["seq"]

    async def wait_for(self, event: str, timeout: float = 10, **fields) -> dict:
        """The first event named ``event`` whose ``fields`` have the given values, not yet
        handed out; waits for it up to ``timeout`` seconds, then raises SmscError."""
        def matches(candidate: dict) -> bool:
            return candidate.get("event") == event and all(
                candidate.get(key) == value for key, value in fields.items())
        return await self._wait(matches, timeout, f"{event} {fields or ''}")

    async def _wait(self, matches, timeout: float, what: str) -> dict:
        for index, candidate in enumerate(self.events):
            if not self._consumed[index] and matches(candidate):
                self._consumed[index] = True
                return candidate
        if self._exited:
            raise SmscError(f"smsc.pl has exited; no {what}")
        waiting = defer.Deferred()
        entry = (what, matches, waiting)
        self._waiters.append(entry)
        waiting.addTimeout(timeout, self._reactor)
        try:
            return await waiting
        except defer.TimeoutError:
            raise SmscError(f"no {what} within {timeout} s; events: {self.events}") from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _line_received(self, line: str) -> None:
        if line.startswith("LISTENING "):
            self.port = int(line.split()[1])
            if self._listening is not None and not self._listening.called:
                self._listening.callback(self.port)
            return
        try:
            received = json.loads(line)
        except ValueError:
            received = {"event": "garbage", "line": line}
        self.events.append(received)
        self._consumed.append(False)
        for entry in list(self._waiters):
            _what, matches, waiting = entry
            if matches(received):
                self._waiters.remove(entry)
                self._consumed[-1] = True
                waiting.callback(received)
                return

    def _process_ended(self, reason) -> None:
        self._exited = True
        for exited in self._exit_waiters:
            exited.callback(None)
        self._exit_waiters.clear()
        if self._listening is not None and not self._listening.called:
            self._listening.errback(SmscError(f"smsc.pl exited: {self.stderr}"))
        for _what, _matches, waiting in list(self._waiters):
            waiting.errback(SmscError(f"smsc.pl exited; events: {self.events}\n{self.stderr}"))
        self._waiters.clear()

    def kill(self) -> None:
        """End the process at once."""
        if not self._exited and self._transport is not None:
            try:
                self._transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass

    async def stop(self, timeout: float = 5) -> None:
        """Ask the SMSC to quit and wait for it to exit; kill it if it takes longer."""
        if self._transport is None or self._exited:
            return
        exited = defer.Deferred()
        self._exit_waiters.append(exited)
        self.send("quit")
        self._transport.closeStdin()
        exited.addTimeout(timeout, self._reactor)
        try:
            await exited
        except defer.TimeoutError:
            exited = defer.Deferred()
            self._exit_waiters.append(exited)
            self.kill()
            await exited
