"""Which pjsua2 a worker runs on, and the limits that follow from it.

Two engines run mizu's worker code unchanged: the PyPI wheel (4 calls, a 64-handle
select() ioqueue that aborts the process when it runs dry) and pjsua2 built from
pjproject's source by ``tools/build-engine`` (1,024 calls, epoll with 8,192 handles). A
worker learns which one it has from the engine itself, at run time: the calls pjsua
accepted (``pjsua_call_get_max_count``), the ioqueue it was built with, the package's
version (the built one carries a local version such as ``2.17+mizu1``). Each call takes
two sockets (RTP and RTCP), so the open-file limit bounds the calls too.
"""

from __future__ import annotations

import dataclasses
import resource

FILES_PER_CALL = 2  # RTP and RTCP
FILES_RESERVED = 64  # SIP transports, TCP connections, the AMP link, logs, epoll, Python


@dataclasses.dataclass(frozen=True)
class SetupLimits:
    """Call setups a second (and at once) a worker lets through, per direction: each has
    a budget of its own, so a flood of trigger calls never stops callbacks being placed."""

    incoming_rate: float
    incoming_burst: int
    outgoing_rate: float
    outgoing_burst: int


# The wheel: 32 INVITEs within 500 ms abort it (about 64/s sustained); these keep
# 2 × (4 calls + burst + rate × 0.5) sockets below its 64 handles.
WHEEL_LIMITS = SetupLimits(incoming_rate=25.0, incoming_burst=4,
                           outgoing_rate=15.0, outgoing_burst=2)
# The built engine has no handle table to protect (epoll, 8,192 handles); its budgets keep
# a worker's Python thread, which saturates first, out of overload. Measured on 2 cores:
# 300 INVITEs/s for 10 s all answered (worker ~45 % of a core), and above 400/s the rest
# answered 503; 1,000 originated calls at 100/s all answered (worker ~20 %). The bursts
# absorb a controller or caller that falls behind and catches up at once.
BUILT_LIMITS = SetupLimits(incoming_rate=400.0, incoming_burst=400,
                           outgoing_rate=100.0, outgoing_burst=50)


def limits_for(ioqueue: str) -> SetupLimits:
    """The setup limits for an engine whose ioqueue is ``ioqueue`` (``select``, ``epoll``):
    only the select() ioqueue has the small handle table the wheel's limits protect."""
    return WHEEL_LIMITS if ioqueue.startswith("select") else BUILT_LIMITS


def engine_name(package_version: str, pjproject_version: str) -> str:
    """``pjproject-2.17+mizu1`` for a build with a local version, else ``wheel-2.15.1``."""
    if "+" in package_version:
        return f"pjproject-{package_version}"
    return f"wheel-{pjproject_version}"


def files_needed(calls: int) -> int:
    """The open-file limit ``calls`` calls need."""
    return FILES_PER_CALL * calls + FILES_RESERVED


def calls_allowed(file_limit: int) -> int:
    """How many calls an open-file limit of ``file_limit`` leaves room for."""
    if file_limit == resource.RLIM_INFINITY:
        return 1 << 30
    return max(0, (file_limit - FILES_RESERVED) // FILES_PER_CALL)


def raise_file_limit(calls: int, getrlimit=resource.getrlimit,
                     setrlimit=resource.setrlimit) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one (TCP connections take files too),
    or to what ``calls`` calls need if the hard one is unlimited; returns the soft limit
    now in force (unchanged when it cannot be raised)."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft
    target = max(soft, files_needed(calls)) if hard == resource.RLIM_INFINITY else hard
    if target <= soft:
        return soft
    try:
        setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return soft
    return target


def worker_calls(wanted: int, file_limit: int) -> int:
    """The calls to configure pjsua with: the node's share, within the file limit."""
    return min(wanted, calls_allowed(file_limit))
