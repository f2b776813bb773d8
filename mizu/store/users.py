"""``tb_user`` and ``tb_anumbers``: access numbers, end users and traffic senders."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from decimal import Decimal

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()

_COLUMNS = ("id, username, password, pincode, usertype, credit, iscallback, anumberlookup,"
            " ivrid, authip, callerid, maxcalls, callbacksperhour, dailyspend")


@dataclass(frozen=True)
class User:
    """A row of ``tb_user``; an access number is an enduser with iscallback or ivrid set."""

    id: int
    username: str
    password: str
    pincode: str
    usertype: str
    credit: Decimal
    iscallback: int
    anumberlookup: int
    ivrid: int
    authip: str
    callerid: str
    # This user's fraud limits: None follows [fraud], 0 is no limit.
    maxcalls: int | None = None
    callbacksperhour: int | None = None
    dailyspend: Decimal | None = None

    @property
    def is_access_number(self) -> bool:
        return self.usertype == "enduser" and bool(self.iscallback or self.ivrid)

    def allows_ip(self, host: str) -> bool:
        """Whether ``host`` is in this traffic sender's ``authip`` (IPs or CIDRs)."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        for entry in self.authip.split(","):
            entry = entry.strip()
            if not entry:
                continue
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                log.warn("user {name}: ignoring bad authip entry {entry!r}",
                         name=self.username, entry=entry)
        return False


class Users:
    """Reads users for call triage and authentication."""

    def __init__(self, pool):
        self._pool = pool

    @defer.inlineCallbacks
    def by_username(self, username: str):
        """The user with this username, or None."""
        rows = yield self._pool.runQuery(
            f"SELECT {_COLUMNS} FROM tb_user WHERE username = %s", (username,))
        return User(*rows[0]) if rows else None

    @defer.inlineCallbacks
    def access_number(self, number: str):
        """The access number (DID) ``number``, or None when it is not one."""
        user = yield self.by_username(number)
        return user if user is not None and user.is_access_number else None

    @defer.inlineCallbacks
    def traffic_sender_for(self, host: str):
        """The traffic sender whose ``authip`` covers ``host``, or None."""
        rows = yield self._pool.runQuery(
            f"SELECT {_COLUMNS} FROM tb_user WHERE usertype = 'trafficsender'"
            " AND authip <> '' ORDER BY id")
        for row in rows:
            user = User(*row)
            if user.allows_ip(host):
                return user
        return None

    @defer.inlineCallbacks
    def by_anumber(self, anumber: str):
        """The end user who owns caller number ``anumber`` in tb_anumbers, or None."""
        rows = yield self._pool.runQuery(
            f"SELECT {', '.join('u.' + c.strip() for c in _COLUMNS.split(','))}"
            " FROM tb_anumbers a JOIN tb_user u ON u.id = a.userid WHERE a.anumber = %s",
            (anumber,))
        return User(*rows[0]) if rows else None

    @defer.inlineCallbacks
    def by_id(self, userid: int):
        """The user with this id, or None."""
        rows = yield self._pool.runQuery(
            f"SELECT {_COLUMNS} FROM tb_user WHERE id = %s", (userid,))
        return User(*rows[0]) if rows else None

    @defer.inlineCallbacks
    def by_pincode(self, pin: str):
        """The user whose PIN is ``pin``, or None (an empty PIN matches nobody)."""
        if not pin:
            return None
        rows = yield self._pool.runQuery(
            f"SELECT {_COLUMNS} FROM tb_user WHERE pincode = %s", (pin,))
        return User(*rows[0]) if rows else None

    @defer.inlineCallbacks
    def add_anumber(self, anumber: str, userid: int):
        """Register caller number ``anumber`` for the user unless it is known already;
        fires with whether it was added."""
        rows = yield self._pool.runQuery(
            "INSERT INTO tb_anumbers (anumber, userid) VALUES (%s, %s)"
            " ON CONFLICT (anumber) DO NOTHING RETURNING id", (anumber, userid))
        return bool(rows)
