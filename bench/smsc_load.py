"""A load SMSC for bench/smpp_inbound.py: pushes deliver_sm as fast as its window allows.

Usage (the bench starts it; by hand it is the same)::

    python bench/smsc_load.py --messages 20000 --warmup 500 --window 64 --pin 1234

It listens on 127.0.0.1 (an ephemeral port), prints ``{"port": N}`` on stdout, accepts one
ESME bind (transceiver or receiver, any credentials), answers ``enquire_link``,
``submit_sm`` (counted: mizu's replies) and ``unbind``. Once bound *and* told ``go`` on
stdin it delivers ``--warmup`` texts, waits for all their answers, then ``--messages``
texts, keeping at most ``--window`` unanswered, and prints one JSON line with the counts
and times of both phases. It keeps serving (mizu's replies, its unbind) until stdin closes.

Texts are the PIN form ``<pin> <number>``: message ``i`` of phase ``p`` comes from the
sender ``4915<p><i:07>`` and asks to call ``4930<p><i:07>`` back, so every one is a new
callback (a distinct A-number) and a distinct text (no duplicate). PDUs are encoded with
``smpp.pdu`` before the run; answers are read from their 16-byte header, which is all a
``deliver_sm_resp`` says that matters here.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import struct
import sys
import time

from smpp.pdu import operations, pdu_types
from smpp.pdu.pdu_encoding import PDUEncoder

HEADER = struct.Struct(">IIII")
DELIVER_SM_RESP, GENERIC_NACK, SUBMIT_SM, ENQUIRE_LINK, UNBIND = (
    0x80000005, 0x80000000, 0x00000004, 0x00000015, 0x00000006)
BINDS = {0x00000009: operations.BindTransceiverResp, 0x00000001: operations.BindReceiverResp}
ESME_ROK, ESME_RTHROTTLED, ESME_RX_T_APPN = 0x00, 0x58, 0x64
STALL = 30.0  # seconds without any answer: give up on the rest of a phase

_codec = PDUEncoder()


def encoded(pdu) -> bytes:
    """``pdu`` on the wire."""
    return _codec.encode(pdu)


def with_seq(template: bytes, seq: int) -> bytes:
    """A pre-encoded PDU with its sequence number replaced."""
    return template[:12] + struct.pack(">I", seq) + template[16:]


def deliveries(phase: int, count: int, pin: str, first_seq: int) -> list[bytes]:
    """The ``deliver_sm`` PDUs of one phase, ready to write."""
    esm = pdu_types.EsmClass(pdu_types.EsmClassMode.DEFAULT, pdu_types.EsmClassType.DEFAULT)
    return [encoded(operations.DeliverSM(
        seqNum=first_seq + i, source_addr=f"4915{phase}{i:07d}",
        destination_addr="4915790000", short_message=f"{pin} 4930{phase}{i:07d}".encode(),
        esm_class=esm, data_coding=pdu_types.DataCoding())) for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank), 0 when empty."""
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


class Phase:
    """One batch of deliveries: what was sent when, and how each was answered."""

    def __init__(self, pdus: list[bytes], first_seq: int, window: int):
        self.pdus, self.first_seq, self.window = pdus, first_seq, window
        self.next = 0
        self.sent_at = [0.0] * len(pdus)
        self.waits: list[float] = []
        self.answer_times: list[float] = []
        self.statuses: dict[int, int] = {}
        self.outstanding = 0
        self.started = self.last_answer = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def pump(self, transport) -> None:
        """Send while the window has room."""
        chunk = []
        now = time.perf_counter()
        while self.outstanding < self.window and self.next < len(self.pdus):
            chunk.append(self.pdus[self.next])
            self.sent_at[self.next] = now
            self.next += 1
            self.outstanding += 1
        if chunk:
            transport.write(b"".join(chunk))

    def answered(self, seq: int, status: int, transport) -> bool:
        """Note the answer to ``seq``; False when it is not one of this phase's."""
        index = seq - self.first_seq
        if not 0 <= index < self.next:
            return False
        self.last_answer = now = time.perf_counter()
        self.waits.append(now - self.sent_at[index])
        self.answer_times.append(now)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.outstanding -= 1
        if self.next < len(self.pdus):
            self.pump(transport)
        elif not self.outstanding and not self.done.done():
            self.done.set_result(None)
        return True

    def timeline(self) -> list[int]:
        """Answers in each second of the phase."""
        counts: list[int] = []
        for t in self.answer_times:
            second = int(t - self.started)
            counts.extend([0] * (second + 1 - len(counts)))
            counts[second] += 1
        return counts

    def report(self) -> dict:
        """The phase's figures, as JSON-ready values."""
        answered = sum(self.statuses.values())
        seconds = max(self.last_answer - self.started, 1e-9)
        return {"sent": self.next, "answered": answered, "unanswered": self.next - answered,
                "acked_ok": self.statuses.get(ESME_ROK, 0),
                "throttled": self.statuses.get(ESME_RTHROTTLED, 0),
                "temporary": self.statuses.get(ESME_RX_T_APPN, 0),
                "other": {f"0x{k:02x}": v for k, v in self.statuses.items()
                          if k not in (ESME_ROK, ESME_RTHROTTLED, ESME_RX_T_APPN)},
                "seconds": seconds, "per_second": self.timeline(),
                "p50_ms": percentile(self.waits, 0.5) * 1000,
                "p99_ms": percentile(self.waits, 0.99) * 1000}


class Smsc(asyncio.Protocol):
    """The SMSC side of one ESME connection."""

    def __init__(self, server: LoadServer):
        self.server = server
        self.buffer = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.server.lost(self)

    def data_received(self, data: bytes):
        self.buffer += data
        while len(self.buffer) >= 16:
            length = int.from_bytes(self.buffer[:4], "big")
            if len(self.buffer) < length:
                return
            frame = bytes(self.buffer[:length])
            del self.buffer[:length]
            self.frame(frame)

    def frame(self, frame: bytes):
        _, command, status, seq = HEADER.unpack_from(frame)
        server = self.server
        if command in (DELIVER_SM_RESP, GENERIC_NACK):
            phase = server.phase
            if phase is None or not phase.answered(seq, status, self.transport):
                server.stray += 1
        elif command == SUBMIT_SM:
            server.submits += 1
            self.transport.write(with_seq(server.submit_resp, seq))
        elif command == ENQUIRE_LINK:
            self.transport.write(with_seq(server.enquire_resp, seq))
        elif command in BINDS:
            pdu = _codec.decode(io.BytesIO(frame))
            self.transport.write(encoded(BINDS[command](seqNum=pdu.seqNum, system_id="load")))
            server.bound(self)
        elif command == UNBIND:
            self.transport.write(encoded(operations.UnbindResp(seqNum=seq)))
            self.transport.close()


class LoadServer:
    """Holds the bound ESME and runs the phases once told to go."""

    def __init__(self):
        self.esme: Smsc | None = None
        self.phase: Phase | None = None
        self.submits = self.stray = 0
        self.submit_resp = encoded(operations.SubmitSMResp(seqNum=1, message_id="load"))
        self.enquire_resp = encoded(operations.EnquireLinkResp(seqNum=1))
        self.is_bound = asyncio.Event()

    def protocol(self) -> Smsc:
        return Smsc(self)

    def bound(self, esme: Smsc) -> None:
        self.esme = esme
        self.is_bound.set()

    def lost(self, esme: Smsc) -> None:
        if esme is self.esme:
            self.esme = None
            self.is_bound.clear()
            if self.phase is not None and not self.phase.done.done():
                self.phase.done.set_result(None)  # the rest will never be answered

    async def run(self, pdus: list[bytes], first_seq: int, window: int) -> dict:
        """Deliver ``pdus`` through the window and wait for every answer (or a stall)."""
        await self.is_bound.wait()
        phase = self.phase = Phase(pdus, first_seq, window)
        phase.started = phase.last_answer = time.perf_counter()
        phase.pump(self.esme.transport)
        while not phase.done.done():
            await asyncio.wait([phase.done], timeout=1.0)
            if time.perf_counter() - phase.last_answer > STALL:
                break
        self.phase = None
        return phase.report()


async def main(args) -> None:
    loop = asyncio.get_running_loop()
    server = LoadServer()
    listener = await loop.create_server(server.protocol, "127.0.0.1", args.port)
    print(json.dumps({"port": listener.sockets[0].getsockname()[1]}), flush=True)
    warm = deliveries(0, args.warmup, args.pin, 1)
    run = deliveries(1, args.messages, args.pin, 1 + args.warmup)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (await reader.readline()).strip() not in (b"go", b""):
        pass
    warmup = await server.run(warm, 1, args.window)
    submits_before = server.submits
    result = await server.run(run, 1 + args.warmup, args.window)
    await asyncio.sleep(0.5)  # replies trail their deliver_sm_resp
    result.update(warmup=warmup, window=args.window, submit_sm=server.submits - submits_before,
                  stray_answers=server.stray)
    print(json.dumps(result), flush=True)
    while await reader.readline():  # serve mizu (its unbind) until stdin closes
        pass
    listener.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--pin", default="1234")
    asyncio.run(main(parser.parse_args()))
