"""Joining the parts of a concatenated SMS back into one text, with bounded memory.

Parts belong together when they share sender, reference and total. They may come in any
order; a repeated part is ignored (the first copy wins). Because senders and SMSCs are not
trusted, everything is bounded:

- an incomplete message is forgotten ``timeout`` seconds after its first part (checked
  lazily, when a part is added or ``pending()`` is asked, with ``clock.seconds()``);
- at most ``max_pending`` incomplete messages are kept; a new one forgets the oldest;
- a message of more than ``MAX_PARTS`` parts raises ``CodingError`` for each of its parts
  (nothing is kept for it);
- a message whose parts add up to more than ``MAX_CHARS`` characters raises ``CodingError``
  once, for the part that goes over; its later parts are swallowed until it is forgotten.

A completed message is forgotten at once, so a late duplicate of one of its parts starts a
new incomplete message, which times out. Whole-message duplicates are not this module's
concern.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from mizu.sms.coding import CodingError, Part

MAX_PARTS = 16
MAX_CHARS = 2_000


@dataclass
class _Incomplete:
    """The parts of one message seen so far."""

    first: float                      # when its first part came, for the timeout
    parts: dict[int, str] = field(default_factory=dict)
    chars: int = 0
    refused: bool = False             # went over MAX_CHARS: later parts are swallowed


class Reassembly:
    """Collects the parts of concatenated messages; ``add`` hands back each whole text."""

    def __init__(self, clock, timeout: float = 120.0, max_pending: int = 10_000):
        self._clock = clock
        self._timeout = timeout
        self._max_pending = max_pending
        # oldest first: first parts arrive in clock order, so expiry only looks at the front
        self._incomplete: OrderedDict[tuple[str, int, int], _Incomplete] = OrderedDict()

    def add(self, sender: str, part: Part) -> str | None:
        """The whole text once every part has come (at once for a single part), else None."""
        if part.concat is None:
            return part.text
        reference, total, seq = part.concat
        if not 1 <= seq <= total:
            raise CodingError(f"bad concatenation: part {seq} of {total}")
        if total > MAX_PARTS:
            raise CodingError(f"message too long: {total} parts, at most {MAX_PARTS}")
        if total == 1:
            return part.text
        self._expire()
        key = (sender, reference, total)
        message = self._incomplete.get(key)
        if message is None:
            if len(self._incomplete) >= self._max_pending:
                self._incomplete.popitem(last=False)
            message = self._incomplete[key] = _Incomplete(self._clock.seconds())
        if message.refused or seq in message.parts:
            return None
        message.chars += len(part.text)
        if message.chars > MAX_CHARS:
            message.refused = True
            message.parts.clear()
            raise CodingError(f"message too long: more than {MAX_CHARS} characters")
        message.parts[seq] = part.text
        if len(message.parts) < total:
            return None
        del self._incomplete[key]
        return "".join(message.parts[n] for n in range(1, total + 1))

    def pending(self) -> int:
        """How many incomplete messages are kept (after forgetting the timed-out ones)."""
        self._expire()
        return len(self._incomplete)

    def _expire(self) -> None:
        deadline = self._clock.seconds() - self._timeout
        while self._incomplete:
            oldest = next(iter(self._incomplete.values()))
            if oldest.first > deadline:
                break
            self._incomplete.popitem(last=False)
