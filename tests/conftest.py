"""Shared fixtures: one real PostgreSQL server for the session, a fresh database per test."""

import uuid

import psycopg2
import pytest
from psycopg2.extensions import make_dsn

from mizu.store.embedded import EmbeddedPostgres


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A real PostgreSQL (the embedded server mizu ships with), for the whole run."""
    server = EmbeddedPostgres(str(tmp_path_factory.mktemp("pg")))
    dsn = server.start()
    yield dsn
    server.stop()


def admin_connection(dsn):
    """A blocking autocommit connection for test set-up and inspection."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


@pytest.fixture
def database(pg_server):
    """The DSN of a new, empty database, dropped after the test."""
    name = "mizu_test_" + uuid.uuid4().hex[:12]
    conn = admin_connection(pg_server)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    yield make_dsn(pg_server, dbname=name)
    conn = admin_connection(pg_server)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


@pytest.fixture
def sql(database):
    """Run SQL on the test database synchronously: ``sql("SELECT ...", params)`` → rows."""
    conn = admin_connection(database)

    def run(query, params=None):
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None

    yield run
    conn.close()
