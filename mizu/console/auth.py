"""Console accounts: a cred checker over ``[console.users]`` and the first-start admin."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable, Mapping

import bcrypt
from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

ADMIN_PASSWORD_FILE = "admin-password"
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


def is_bcrypt(stored: str) -> bool:
    """Whether a configured password is a bcrypt hash rather than plain text."""
    return stored.startswith(_BCRYPT_PREFIXES)


def check_password(stored: str, given: str) -> bool:
    """Compare a given password with a plain or bcrypt-hashed stored one."""
    if is_bcrypt(stored):
        try:
            return bcrypt.checkpw(given.encode(), stored.encode())
        except ValueError:
            log.warn("a [console.users] bcrypt hash is malformed")
            return False
    return hmac.compare_digest(stored.encode(), given.encode())


def ensure_admin(datadir: str) -> dict[str, str]:
    """The ``admin`` account used when no console user is configured.

    Its random password is written once to ``<datadir>/admin-password`` (mode 0600)
    and read back on later starts.
    """
    path = os.path.join(datadir, ADMIN_PASSWORD_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().strip()
        if password:
            return {"admin": password}
    except FileNotFoundError:
        pass
    os.makedirs(datadir, exist_ok=True)
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
    os.chmod(path, 0o600)
    log.warn("no [console.users] configured: created console user admin, "
             "password written to {path}", path=os.path.abspath(path))
    return {"admin": password}


@implementer(ICredentialsChecker)
class ConsoleChecker:
    """Checks console logins against the accounts in force (they change on reload)."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, users: Callable[[], Mapping[str, str]], reactor):
        self._users = users
        self._reactor = reactor

    def requestAvatarId(self, creds) -> defer.Deferred:
        """Fires with the user name, or fails with ``UnauthorizedLogin``."""
        name = creds.username.decode("utf-8", "replace")
        given = creds.password.decode("utf-8", "replace")
        stored = self._users().get(name)
        if stored is None:
            return defer.fail(error.UnauthorizedLogin("unknown user"))
        if is_bcrypt(stored):
            # bcrypt is slow on purpose: keep it off the reactor thread.
            d = threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                          check_password, stored, given)
        else:
            d = defer.succeed(check_password(stored, given))

        def verdict(ok):
            if not ok:
                raise error.UnauthorizedLogin("wrong password")
            return name

        return d.addCallback(verdict)
