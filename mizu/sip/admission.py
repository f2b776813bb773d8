"""What a worker lets through to pjsua's media: the checks made before a call exists.

The wheel's pjsua2 keeps media sockets in a 64-handle select() ioqueue and aborts the
process when they run out. Every audio stream of an INVITE takes two sockets before
Python sees the call, and a closed socket's handle is reused only 500 ms later. So the
worker refuses, before pjsua allocates any media (``Endpoint.onSelectAccount``): offers
of more than one audio stream, headers that are not UTF-8, and INVITEs beyond a setup
budget. With at most 4 calls live, 2 × (4 + burst + rate × 0.5) sockets stay below 64.
The budgets follow the engine (``mizu.sip.engine``): a pjsua2 built with epoll and 8,192
handles takes far more; the checks of the offer hold on both.
"""

from __future__ import annotations

from mizu.sip import sipmsg

MAX_AUDIO_STREAMS = 1


def is_utf8(text: str) -> bool:
    """Whether ``text`` came from valid UTF-8 (SWIG hands over bad bytes as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def wire_text(text: str) -> str:
    """``text`` fit for AMP: bytes that were not UTF-8 become U+FFFD."""
    return text if is_utf8(text) else text.encode("utf-8", "replace").decode("utf-8")


def refusal(message: str) -> tuple[int, str] | None:
    """Why an INVITE is refused whatever the load, as (code, reason), or None."""
    head, _, body = message.replace("\r\n", "\n").partition("\n\n")
    if not is_utf8(head):
        return 400, "Bad Request (header not UTF-8)"
    if sipmsg.audio_streams(body) > MAX_AUDIO_STREAMS:
        return 488, "Not Acceptable Here (one audio stream only)"
    return None


class SetupBudget:
    """A token bucket: ``rate`` call setups a second, ``burst`` at once."""

    def __init__(self, clock, rate: float, burst: int):
        self._clock, self.rate, self.burst = clock, rate, burst
        self._tokens = float(burst)
        self._at = clock.seconds()

    def take(self) -> bool:
        """Spend one setup if the budget allows it now."""
        now = self._clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
