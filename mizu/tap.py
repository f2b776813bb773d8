"""``twistd mizu``: command-line options and the service tree."""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable

from twisted.python import usage

from mizu.config import Config, load_config
from mizu.errors import ConfigError


class Options(usage.Options):
    """Options of ``twistd mizu``; twistd's own (-n, --logfile, --pidfile) come first."""

    synopsis = "[--config PATH] [--db DSN] [--datadir PATH]"
    optParameters = [
        ["config", "c", None, "INI file (default: etc/mizu.ini if present)."],
        ["db", None, None, "PostgreSQL DSN; overrides [database] dsn. Empty: embedded."],
        ["datadir", None, None, "Data folder; overrides [database] datadir."],
    ]


def _loader(options) -> Callable[[], Config]:
    return lambda: load_config(options["config"], dsn=options["db"], datadir=options["datadir"])


def _check_reachable(config: Config) -> None:
    """Fail fast, before daemonising, when an external database cannot be reached."""
    if not config.database.dsn:
        return
    import psycopg2

    from mizu.store.pool import first_line, redact_dsn

    try:
        psycopg2.connect(config.database.dsn, connect_timeout=10).close()
    except psycopg2.Error as e:
        raise SystemExit(
            f"mizu: cannot connect to database {redact_dsn(config.database.dsn)}: "
            f"{first_line(e)}"
        ) from None


def build(config: Config, load, reactor):
    """The root service with its children in start order: store, dispatcher, sip, http,
    smpp, console."""
    from mizu.console.service import ConsoleService
    from mizu.dispatch.dispatcher import Dispatcher
    from mizu.dispatch.inbound import Inbound
    from mizu.http.service import HttpService
    from mizu.service import MizuService
    from mizu.sip.bridge import SipBridge
    from mizu.sip.triage import Triage
    from mizu.sms.service import SmppService
    from mizu.store.service import StoreService

    root = MizuService(config, load, reactor)
    store = StoreService(config.database, reactor)
    store.setServiceParent(root)
    bridge = SipBridge(config.sip, reactor) if config.sip.workers else None
    dispatcher = Dispatcher(root, bridge, reactor)
    dispatcher.setServiceParent(root)
    if bridge is not None:
        bridge.setIncomingHandler(Triage(store.users, lambda: root.settings, reactor,
                                         core=Inbound(dispatcher), bans=root.bans))
        bridge.setServiceParent(root)
    HttpService(dispatcher, config.http, root.bans, reactor).setServiceParent(root)
    SmppService(root, dispatcher, reactor).setServiceParent(root)
    ConsoleService(root, config, reactor).setServiceParent(root)
    return root


def _exit_failed() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(1)


def makeService(options: Options):
    """Load and validate the configuration, then build the service tree."""
    from twisted.internet import reactor
    from twisted.logger import Logger

    load = _loader(options)
    try:
        config = load()
    except ConfigError as e:
        raise SystemExit(
            "mizu: the configuration has errors:\n" + "".join(f"  {m}\n" for m in e.errors)
        ) from None
    _check_reachable(config)
    root = build(config, load, reactor)
    log = Logger(namespace="mizu")

    def cannot_start(failure):
        log.critical("mizu cannot start: {reason}", reason=failure.getErrorMessage())
        atexit.register(_exit_failed)  # twistd exits 0 otherwise
        if reactor.running:
            reactor.stop()

    root.whenReady().addErrback(cannot_start)
    return root
