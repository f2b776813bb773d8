"""Fixtures for SMS tests: a real SMSC (Perl Net::SMPP) on a free loopback port."""

import pytest_twisted

from tests.sms.smsc import Smsc


@pytest_twisted.async_yield_fixture
async def smsc():
    """A started SMSC (tests/sms/smsc.pl) on 127.0.0.1 at ``smsc.port``, stopped after the test."""
    peer = Smsc()
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()
