"""Versioned schema migrations, applied in order on start under an advisory lock."""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mizu.errors import SchemaTooNew

log = Logger()

# An arbitrary constant: every mizu node migrating the same database takes this lock.
_LOCK_KEY = 0x6D697A75

_V1 = [
    """
    CREATE TABLE tb_user (
        id            bigserial PRIMARY KEY,
        username      text NOT NULL UNIQUE,
        password      text NOT NULL DEFAULT '',
        pincode       text NOT NULL DEFAULT '',
        usertype      text NOT NULL DEFAULT 'enduser'
                      CHECK (usertype IN ('enduser', 'trafficsender')),
        credit        numeric(16, 4) NOT NULL DEFAULT 0,
        iscallback    integer NOT NULL DEFAULT 0 CHECK (iscallback >= 0),
        anumberlookup integer NOT NULL DEFAULT 0 CHECK (anumberlookup IN (0, 1)),
        ivrid         integer NOT NULL DEFAULT 0 CHECK (ivrid >= 0),
        authip        text NOT NULL DEFAULT '',
        callerid      text NOT NULL DEFAULT '',
        created       timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE UNIQUE INDEX tb_user_pincode ON tb_user (pincode) WHERE pincode <> ''",
    """
    CREATE TABLE tb_anumbers (
        id      bigserial PRIMARY KEY,
        anumber text NOT NULL UNIQUE,
        userid  bigint NOT NULL REFERENCES tb_user (id) ON DELETE CASCADE
    )""",
    "CREATE INDEX tb_anumbers_userid ON tb_anumbers (userid)",
    """
    CREATE TABLE tb_ccampaigns (
        id        serial PRIMARY KEY,
        name      text NOT NULL DEFAULT '',
        ivrscript text NOT NULL DEFAULT 'callback'
    )""",
    """
    CREATE TABLE tb_config (
        name  text PRIMARY KEY,
        value text NOT NULL DEFAULT ''
    )""",
    """
    CREATE TABLE tb_rates (
        id         bigserial PRIMARY KEY,
        prefix     text NOT NULL,
        price      numeric(16, 6) NOT NULL DEFAULT 0 CHECK (price >= 0),
        initblock  integer NOT NULL DEFAULT 60 CHECK (initblock >= 0),
        increment  integer NOT NULL DEFAULT 60 CHECK (increment >= 1),
        connectfee numeric(16, 6) NOT NULL DEFAULT 0 CHECK (connectfee >= 0)
    )""",
    "CREATE INDEX tb_rates_prefix ON tb_rates (prefix text_pattern_ops)",
    """
    CREATE TABLE tb_routes (
        id      bigserial PRIMARY KEY,
        prefix  text NOT NULL DEFAULT '',
        gateway text NOT NULL
    )""",
    "CREATE INDEX tb_routes_prefix ON tb_routes (prefix text_pattern_ops)",
    """
    CREATE TABLE tb_callbacks (
        id           bigserial PRIMARY KEY,
        userid       bigint REFERENCES tb_user (id) ON DELETE SET NULL,
        anum         text NOT NULL,
        bnum         text NOT NULL DEFAULT '',
        source       text NOT NULL DEFAULT 'db'
                     CHECK (source IN ('ani', 'http', 'web', 'sms', 'console', 'db')),
        status       text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'calling_a', 'ivr', 'calling_b', 'bridged',
                                       'completed', 'failed')),
        reason       text NOT NULL DEFAULT '',
        accessnumber text NOT NULL DEFAULT '',
        due          timestamptz NOT NULL DEFAULT now(),
        node         text NOT NULL DEFAULT '',
        created      timestamptz NOT NULL DEFAULT now(),
        updated      timestamptz NOT NULL DEFAULT now()
    )""",
    # The dispatcher's queue scan: pending rows by due time.
    "CREATE INDEX tb_callbacks_pending ON tb_callbacks (due) WHERE status = 'pending'",
    "CREATE INDEX tb_callbacks_userid ON tb_callbacks (userid, created)",
    # Wake the dispatcher at once for rows inserted by anyone (the "db check" trigger).
    """
    CREATE FUNCTION mizu_notify_callback() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.status = 'pending' THEN
            PERFORM pg_notify('mizu_callbacks', NEW.id::text);
        END IF;
        RETURN NEW;
    END $$""",
    """
    CREATE TRIGGER tb_callbacks_notify AFTER INSERT OR UPDATE OF status ON tb_callbacks
        FOR EACH ROW EXECUTE FUNCTION mizu_notify_callback()""",
    """
    CREATE TABLE tb_cdrs (
        id             bigserial PRIMARY KEY,
        callbackid     bigint REFERENCES tb_callbacks (id) ON DELETE SET NULL,
        userid         bigint REFERENCES tb_user (id) ON DELETE SET NULL,
        leg            text NOT NULL CHECK (leg IN ('in', 'A', 'B')),
        caller         text NOT NULL DEFAULT '',
        callee         text NOT NULL DEFAULT '',
        accessnumber   text NOT NULL DEFAULT '',
        starttime      timestamptz NOT NULL DEFAULT now(),
        answertime     timestamptz,
        endtime        timestamptz,
        duration       integer NOT NULL DEFAULT 0,
        billedduration integer NOT NULL DEFAULT 0,
        cost           numeric(16, 6) NOT NULL DEFAULT 0,
        result         text NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX tb_cdrs_callbackid ON tb_cdrs (callbackid)",
    "CREATE INDEX tb_cdrs_userid ON tb_cdrs (userid, starttime)",
    "CREATE INDEX tb_cdrs_starttime ON tb_cdrs (starttime)",
]

_IN_FLIGHT_SQL = "('calling_a', 'ivr', 'calling_b', 'bridged')"

# V2: what the callback core needs to dispatch, bill and recover after a crash.
_V2 = [
    """
    ALTER TABLE tb_callbacks
        ADD COLUMN ivrid         integer NOT NULL DEFAULT 0,
        ADD COLUMN attempts      integer NOT NULL DEFAULT 0,
        ADD COLUMN authenticated boolean NOT NULL DEFAULT false,
        ADD COLUMN callerid      text NOT NULL DEFAULT '',
        ADD COLUMN heartbeat     timestamptz""",
    # Operators queue callbacks with plain SQL naming a userid: that payer is known, so
    # the IVR must not ask for a PIN. mizu's own inserts say so explicitly.
    """
    CREATE FUNCTION mizu_authenticate_db_callback() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.source = 'db' THEN
            NEW.authenticated := NEW.authenticated OR NEW.userid IS NOT NULL;
        END IF;
        RETURN NEW;
    END $$""",
    """
    CREATE TRIGGER tb_callbacks_authenticate BEFORE INSERT ON tb_callbacks
        FOR EACH ROW EXECUTE FUNCTION mizu_authenticate_db_callback()""",
    # Crash recovery scans the rows in flight.
    f"CREATE INDEX tb_callbacks_inflight ON tb_callbacks (node)"
    f" WHERE status IN {_IN_FLIGHT_SQL}",
    # The tariff a leg was rated with, so a leg interrupted by a crash can be billed later.
    """
    ALTER TABLE tb_cdrs
        ADD COLUMN price      numeric(16, 6) NOT NULL DEFAULT 0,
        ADD COLUMN initblock  integer NOT NULL DEFAULT 0,
        ADD COLUMN increment  integer NOT NULL DEFAULT 1,
        ADD COLUMN connectfee numeric(16, 6) NOT NULL DEFAULT 0,
        ADD COLUMN settled    boolean NOT NULL DEFAULT true,
        ADD COLUMN heartbeat  timestamptz,
        ADD COLUMN node       text NOT NULL DEFAULT '',
        ADD COLUMN session    text NOT NULL DEFAULT ''""",
    "CREATE INDEX tb_cdrs_unsettled ON tb_cdrs (node) WHERE NOT settled",
    """
    CREATE TABLE tb_reservations (
        id        bigserial PRIMARY KEY,
        userid    bigint NOT NULL REFERENCES tb_user (id) ON DELETE CASCADE,
        session   text NOT NULL,
        amount    numeric(16, 4) NOT NULL CHECK (amount >= 0),
        node      text NOT NULL DEFAULT '',
        created   timestamptz NOT NULL DEFAULT now(),
        heartbeat timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX tb_reservations_userid ON tb_reservations (userid)",
    "CREATE INDEX tb_reservations_session ON tb_reservations (session)",
]

# (version, statements); append new versions, never edit an applied one.
# One live callback per A-number from the phone triggers (a caller who dials the access
# number ten times gets one callback). Older duplicates are closed first.
_LIVE = "status IN ('pending', 'calling_a', 'ivr', 'calling_b', 'bridged')"
_V3 = [
    f"""
    UPDATE tb_callbacks c SET status = 'failed', reason = 'duplicate', updated = now()
     WHERE source IN ('ani', 'sms') AND {_LIVE} AND EXISTS (
           SELECT 1 FROM tb_callbacks o WHERE o.anum = c.anum AND o.id < c.id
              AND o.source IN ('ani', 'sms') AND o.{_LIVE})""",
    f"CREATE UNIQUE INDEX tb_callbacks_one_live_trigger ON tb_callbacks (anum)"
    f" WHERE source IN ('ani', 'sms') AND {_LIVE}",
]

# Idempotency-Key of the JSON API: one key names one request of one user.
_V4 = [
    """
    CREATE TABLE tb_idempotency (
        userid     bigint NOT NULL REFERENCES tb_user (id) ON DELETE CASCADE,
        key        text NOT NULL,
        request    text NOT NULL,
        callbackid bigint REFERENCES tb_callbacks (id) ON DELETE SET NULL,
        created    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (userid, key)
    )""",
]

# A copy of a recent request (an SMS delivered again) is looked up by A-number and time.
_V5 = ["CREATE INDEX tb_callbacks_anum ON tb_callbacks (anum, created)"]

# Per-user fraud limits; NULL: the [fraud] setting, 0: no limit for this user.
_V6 = ["ALTER TABLE tb_user ADD COLUMN maxcalls integer CHECK (maxcalls >= 0),"
       " ADD COLUMN callbacksperhour integer CHECK (callbacksperhour >= 0),"
       " ADD COLUMN dailyspend numeric(16, 4) CHECK (dailyspend >= 0)"]

MIGRATIONS: list[tuple[int, list[str]]] = [(1, _V1), (2, _V2), (3, _V3), (4, _V4), (5, _V5),
                                           (6, _V6)]
LATEST = MIGRATIONS[-1][0]


def _migrate(cursor, migrations):
    """One transaction: lock, read the version, apply what is missing."""

    @defer.inlineCallbacks
    def run():
        yield cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        yield cursor.execute(
            "CREATE TABLE IF NOT EXISTS mizu_schema ("
            " version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())"
        )
        yield cursor.execute("SELECT coalesce(max(version), 0) FROM mizu_schema")
        (current,) = cursor.fetchone()
        latest = migrations[-1][0]
        if current > latest:
            raise SchemaTooNew(
                f"the database schema is version {current}, newer than this mizu "
                f"(which knows up to {latest}); upgrade mizu or use another database"
            )
        applied = []
        for version, statements in migrations:
            if version <= current:
                continue
            for sql in statements:
                yield cursor.execute(sql)
            yield cursor.execute("INSERT INTO mizu_schema (version) VALUES (%s)", (version,))
            applied.append(version)
        return current, applied

    return run()


@defer.inlineCallbacks
def migrate(pool, migrations=MIGRATIONS):
    """Bring the schema up to date; fires with the version now in force."""
    before, applied = yield pool.runInteraction(_migrate, migrations)
    if applied:
        log.info("schema migrated from version {before} to {after}",
                 before=before, after=applied[-1])
    return applied[-1] if applied else before
