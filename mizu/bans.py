"""Bans by source address for front ends that take passwords (SIP digest, the console).

Only addresses are banned, never user names: banning a name would let anyone lock a
customer out by guessing wrong on purpose. An IPv6 address counts as its /64, since one
host usually holds a whole /64. Each front end counts its failures apart (``kind``).
"""

from __future__ import annotations

import functools
import ipaddress
from collections import deque
from dataclasses import dataclass

from twisted.logger import Logger

log = Logger()


@dataclass(frozen=True)
class Ban:
    """An address refused by one front end until ``until`` (clock seconds)."""

    kind: str
    address: str
    until: float
    failures: int


@functools.lru_cache(maxsize=4096)  # parsed for every HTTP request: keep it cheap
def address_key(host: str) -> str:
    """The unit a ban covers: the IPv4 address, or the /64 of an IPv6 address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Bans:
    """Counts failures per (kind, address) in a sliding window and bans repeat offenders.

    ``failures`` failures within ``window`` seconds ban the address for ``duration``
    seconds; ``failures`` = 0 turns banning off. Memory stays bounded: at most
    ``max_tracked`` addresses are counted at once (the oldest are forgotten first).
    """

    def __init__(self, clock, failures: int = 10, window: float = 60.0,
                 duration: float = 900.0, max_tracked: int = 100_000):
        self._clock = clock
        self._max_tracked = max_tracked
        self._recent: dict[tuple[str, str], deque[float]] = {}
        self._banned: dict[tuple[str, str], Ban] = {}
        self.configure(failures, window, duration)

    def configure(self, failures: int, window: float, duration: float) -> None:
        """New thresholds; bans in force keep their end time."""
        self.failures, self.window, self.duration = failures, window, duration

    def is_banned(self, kind: str, host: str) -> bool:
        """Whether ``host`` is refused by the ``kind`` front end right now."""
        key = (kind, address_key(host))
        ban = self._banned.get(key)
        if ban is None:
            return False
        if ban.until <= self._clock.seconds():
            del self._banned[key]
            return False
        return True

    def remaining(self, kind: str, host: str) -> float:
        """Seconds until the ban on ``host`` by ``kind`` ends; 0 when it is not banned."""
        if not self.is_banned(kind, host):
            return 0.0
        return self._banned[(kind, address_key(host))].until - self._clock.seconds()

    def failed(self, kind: str, host: str) -> bool:
        """Count one failure; True when it (or an earlier one) got the address banned."""
        if self.is_banned(kind, host):
            return True
        if not self.failures:
            return False
        now = self._clock.seconds()
        key = (kind, address_key(host))
        times = self._recent.pop(key, None) or deque()
        self._recent[key] = times  # re-inserted: dict order is least recently failed first
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) >= self.failures:
            del self._recent[key]
            self._banned[key] = Ban(kind, key[1], now + self.duration, len(times))
            log.warn("{kind}: banned {address} for {s} s after {n} failures in {w} s",
                     kind=kind, address=key[1], s=self.duration, n=len(times), w=self.window)
            return True
        while len(self._recent) > self._max_tracked:
            del self._recent[next(iter(self._recent))]
        return False

    def active(self) -> list[Ban]:
        """The bans in force, oldest first."""
        now = self._clock.seconds()
        for key in [k for k, ban in self._banned.items() if ban.until <= now]:
            del self._banned[key]
        return sorted(self._banned.values(), key=lambda ban: ban.until)

    def clear(self, host: str | None = None) -> list[Ban]:
        """Lift the bans on ``host`` (every front end), or all bans; returns those lifted."""
        lifted = [ban for ban in self.active()
                  if host is None or ban.address == address_key(host)]
        for ban in lifted:
            del self._banned[(ban.kind, ban.address)]
            self._recent.pop((ban.kind, ban.address), None)
        if host is None:
            self._recent.clear()
        return lifted
