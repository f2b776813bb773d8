"""Worker processes start, stop and start again in one process, leaving nothing behind."""

import os
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor

from mizu.config import SipConfig
from mizu.errors import TelephonyError
from mizu.sip.bridge import SipBridge
from tests.e2e.peers import free_port, worker_capacity


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def bindable(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest_twisted.ensureDeferred
async def test_stop_and_restart_leave_no_process_or_port_behind():
    """Two workers report their capacity (their half of max_calls, or what the engine
    holds: 4 calls on the wheel), stop cleanly, free their ports, and start again."""
    port = free_port(2)
    config = SipConfig(host="127.0.0.1", port=port, workers=2, shutdown_grace=0)
    capacity = worker_capacity(config.max_calls // 2)
    for _ in range(2):
        bridge = SipBridge(config, reactor)
        await bridge.startService()
        workers = list(bridge.workers.values())
        assert [(w.port, w.capacity) for w in workers] == [(port, capacity),
                                                          (port + 1, capacity)]
        assert all(w.engine.startswith(("wheel-", "pjproject-")) for w in workers)
        assert not bindable(port) and not bindable(port + 1)
        pids = [w.pid for w in workers]
        assert all(alive(pid) for pid in pids)
        await bridge.stopService()
        assert not any(alive(pid) for pid in pids)
        assert bindable(port) and bindable(port + 1)
        for w in workers:  # exited by themselves, not killed after the grace
            assert w.end_reason.value.exitCode == 0


@pytest_twisted.ensureDeferred
async def test_a_worker_that_cannot_bind_fails_the_start():
    """A port already in use: the start fails instead of hanging, and says why."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))
        bridge = SipBridge(SipConfig(host="127.0.0.1", port=port, workers=1), reactor)
        with pytest.raises(TelephonyError,
                           match=f"sip worker 0 \\(port {port}\\) did not start: cannot "
                                 f"listen on UDP 127.0.0.1:{port}: Address already in use"):
            await bridge.startService()
        await bridge.stopService()
