"""The console's telnet layer: Twisted's ``TelnetTransport``, hardened against junk.

Twisted's parser raises on an ``IAC`` followed by a byte that is no telnet command
(``ValueError: Stumped``) and on an empty subnegotiation (``IAC SB IAC SE``), which drops
the connection with a traceback in the log and no word to the peer. RFC 854 asks that an
unknown command be ignored: this transport does so, ignores an empty subnegotiation, and
says why before it closes a subnegotiation that never ends.
"""

from __future__ import annotations

from twisted.conch import telnet
from twisted.logger import Logger

log = Logger()

# The bytes Twisted's parser accepts after an IAC; any other one makes it raise.
_COMMANDS = frozenset((telnet.IAC, telnet.SB, telnet.EOR, telnet.NOP, telnet.DM, telnet.BRK,
                       telnet.IP, telnet.AO, telnet.AYT, telnet.EC, telnet.EL, telnet.GA,
                       telnet.WILL, telnet.WONT, telnet.DO, telnet.DONT))


class ConsoleTelnetTransport(telnet.TelnetTransport):
    """A ``TelnetTransport`` that ignores unknown telnet commands instead of raising."""

    ignored = 0  # unknown commands ignored on this connection (for tests and logs)
    _draining = False
    _abort = None

    def dataReceived(self, data: bytes):
        if self._draining:
            return  # closing: what the peer still sends is read and dropped
        start, end = 0, len(data)
        while start < end:
            if self.state == "escaped" and data[start:start + 1] not in _COMMANDS:
                # IAC <not a command>, possibly split over two reads: skip the pair.
                self.state = "data"
                self.ignored += 1
                start += 1
                continue
            iac = data.find(telnet.IAC, start)
            stop = end if iac == -1 else iac + 1
            super().dataReceived(data[start:stop])
            if self.transport is None or getattr(self.transport, "disconnecting", False):
                return
            start = stop

    def loseConnection(self):
        self._unproduce()
        super().loseConnection()

    def closeAfterWrite(self, callLater, grace: float = 5.0):
        """Close once what was written is sent, reading (and dropping) the peer's input
        meanwhile: closing a socket with unread input resets it, and the peer would lose
        the last lines, which say why. After ``grace`` seconds the connection is aborted."""
        tcp = self.transport
        if tcp is None or getattr(tcp, "disconnecting", False):
            return
        self._draining = True
        self._unproduce()
        if not hasattr(tcp, "loseWriteConnection"):
            tcp.loseConnection()
            return
        tcp.resumeProducing()
        tcp.loseWriteConnection()
        self._abort = callLater(grace, tcp.abortConnection)

    def connectionLost(self, reason):
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        super().connectionLost(reason)

    def _unproduce(self):
        # A session registered as the producer of the connection must let go, or a close
        # waiting on a full send buffer never completes.
        if self.transport is not None and getattr(self.transport, "producer", None):
            self.transport.unregisterProducer()

    def negotiate(self, data):
        if not data:
            self.ignored += 1  # IAC SB IAC SE: nothing to negotiate about
            return
        super().negotiate(data)

    def _subnegotiationLengthExceeded(self) -> None:
        if not self.transport.disconnecting:
            self.write(b"\r\nERROR: telnet subnegotiation longer than %d bytes: connection "
                       b"closed\r\n" % self._MAX_SUBNEGOTIATION_LENGTH)
            self._unproduce()
        super()._subnegotiationLengthExceeded()
