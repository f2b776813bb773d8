"""Helpers for store tests that take connections away from a real PostgreSQL."""

from psycopg2.extensions import make_dsn, parse_dsn
from twisted.internet import reactor, task

from tests.conftest import admin_connection


def allow_connections(database, allowed):
    """Let new connections into the test database, or refuse them (superusers too).

    Existing connections stay. PostgreSQL refuses this on the current database, so it
    is done from the server's ``postgres`` database.
    """
    conn = admin_connection(make_dsn(database, dbname="postgres"))
    try:
        with conn.cursor() as cur:
            name = parse_dsn(database)["dbname"]
            cur.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {str(allowed).lower()}")
    finally:
        conn.close()


async def until(predicate, timeout=10.0):
    """Wait on the real clock until ``predicate()`` is true."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        assert reactor.seconds() < deadline, "timed out"
        await sleep(0.02)


async def sleep(seconds):
    await task.deferLater(reactor, seconds, lambda: None)


def outcome(d):
    """A list that receives ``d``'s result or failure once it fires; ``d`` passes it on."""
    out = []
    d.addBoth(lambda r: out.append(r) or r)
    return out
