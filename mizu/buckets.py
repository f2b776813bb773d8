"""Token buckets by key: request rates for the front ends (HTTP, SMS)."""

from __future__ import annotations


class TokenBuckets:
    """A token bucket per key: ``rate`` requests a second sustained, ``burst`` at once.

    ``rate`` = 0 lets everything through. At most ``max_tracked`` keys are remembered;
    the least recently seen are forgotten first, which only ever lets a client through.
    """

    def __init__(self, clock, rate: float, burst: int, max_tracked: int = 100_000):
        self._clock = clock
        self._max_tracked = max_tracked
        self._buckets: dict[str, tuple[float, float]] = {}
        self.configure(rate, burst)

    def configure(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst

    def take(self, key: str) -> float:
        """Spend one token of ``key``: 0 if there was one, else seconds until there is."""
        if not self.rate:
            return 0.0
        now = self._clock.seconds()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)  # re-inserted: the oldest keys come first
        while len(self._buckets) > self._max_tracked:
            del self._buckets[next(iter(self._buckets))]
        return wait
