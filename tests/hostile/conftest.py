"""Fixtures of the hostile suite: the HTTP suite's running mizu is reused as it is."""

from tests.http.conftest import api, start_api  # noqa: F401  (pytest fixtures)
from tests.sms.conftest import smsc  # noqa: F401,E402  (the Perl Net::SMPP SMSC)
