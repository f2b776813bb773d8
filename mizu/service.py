"""The root service: named children started in order, stopped in reverse, safe reload."""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mizu import __version__
from mizu.bans import Bans
from mizu.config import Config
from mizu.errors import CommandError, ConfigError
from mizu.metrics import Metrics
from mizu.settings import Settings

log = Logger()


class MizuService(MultiService):
    """Owns the configuration and global settings in force, and every named child.

    Children are started one after another in the order they were added (the store
    first), each waited for when its ``startService`` returns a Deferred, and stopped
    in reverse. ``whenReady`` fires once all have started, or fails with the reason.
    """

    def __init__(self, config: Config, load_config: Callable[[], Config], clock):
        super().__init__()
        self.config = config
        self.settings = Settings()
        self._load_config = load_config
        self._started_config = config
        self._clock = clock
        sec = config.security
        self.bans = Bans(clock, sec.ban_failures, sec.ban_window, sec.ban_time)
        self.metrics = Metrics()
        self._outcome: MizuService | Failure | None = None
        self._waiting: list[defer.Deferred] = []
        self.started_at: float | None = None

    @property
    def store(self):
        """The store child."""
        return self.getServiceNamed("store")

    @property
    def dispatcher(self):
        """The dispatcher child (``CommandError`` when this node runs without one)."""
        try:
            return self.getServiceNamed("dispatcher")
        except KeyError:
            raise CommandError("no dispatcher on this node ([sip] workers = 0)") from None

    def whenReady(self) -> defer.Deferred:
        """Fires with self when every child has started; fails if any could not."""
        if self._outcome is None:
            d = defer.Deferred()
            self._waiting.append(d)
            return d
        if isinstance(self._outcome, Failure):
            return defer.fail(self._outcome)
        return defer.succeed(self._outcome)

    def startService(self):
        Service.startService(self)
        self.started_at = self._clock.seconds()
        self._start().addBoth(self._announce)

    @defer.inlineCallbacks
    def _start(self):
        for child in list(self):
            yield defer.maybeDeferred(child.startService)
            if child.name == "store":
                rows = yield self.store.config.load()
                self.settings = Settings.from_rows(rows)
        log.info("mizu {version} ready", version=__version__)
        return self

    def _announce(self, outcome) -> None:
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

    @defer.inlineCallbacks
    def stopService(self):
        """Drain first (no more claims, incoming calls refused), then stop the children in
        reverse; the SIP bridge gives live calls ``[sip] shutdown_grace`` seconds."""
        Service.stopService(self)
        dispatcher = next((child for child in self if child.name == "dispatcher"), None)
        if dispatcher is not None and dispatcher.running and not dispatcher.draining:
            dispatcher.drain()
        for child in reversed(list(self)):
            if child.running:
                try:
                    yield defer.maybeDeferred(child.stopService)
                except Exception:
                    log.failure("stopping {name} failed", name=child.name)

    def status_lines(self) -> list[str]:
        """The ``status`` report: the server, then a part from each child that has one."""
        uptime = int(self._clock.seconds() - (self.started_at or self._clock.seconds()))
        lines = [
            f"mizu {__version__} pid={os.getpid()} uptime={uptime}s",
            f"config {self.config.path or '(built-in defaults)'}",
            f"settings {len(self.settings.items())} in force",
            self._bans_line(),
        ]
        return lines + self._reports("status_lines")

    def _bans_line(self) -> str:
        bans = self.bans.active()
        kinds = sorted({ban.kind for ban in bans})
        parts = "".join(f" {k}={sum(1 for b in bans if b.kind == k)}" for k in kinds)
        return f"bans {len(bans)}{parts}"

    def call_lines(self) -> list[str]:
        """The ``calls`` report: every live leg."""
        return self._reports("call_lines")

    def _reports(self, method: str) -> list[str]:
        """The lines of every running child that has ``method``, in start order."""
        lines = []
        for child in self:
            report = getattr(child, method, None)
            if report is not None and child.running:
                lines += report()
        return lines

    @defer.inlineCallbacks
    def reload(self):
        """Load the config file and tb_config afresh; apply all of it or nothing.

        Fires with notes (settings that need a restart); fails with ``ConfigError``
        listing every problem, leaving everything as it was.
        """
        errors: list[str] = []
        config = settings = None
        try:
            config = self._load_config()
        except ConfigError as e:
            errors += e.errors
        rows = yield self.store.config.load()
        try:
            settings = Settings.from_rows(rows)
        except ConfigError as e:
            errors += e.errors
        if not errors:
            # Children load what they need (rates, scripts, ...) before anything changes.
            for child in self:
                prepare = getattr(child, "prepareReload", None)
                if prepare is not None and child.running:
                    try:
                        yield prepare(config, settings)
                    except ConfigError as e:
                        errors += e.errors
        if errors:
            log.warn("reload refused: {errors}", errors="; ".join(errors))
            raise ConfigError(errors)
        notes = [f"restart required: {what} changed"
                 for what in self._started_config.restart_required(config)]
        self.config, self.settings = config, settings
        sec = config.security
        self.bans.configure(sec.ban_failures, sec.ban_window, sec.ban_time)
        for child in self:
            reconfig = getattr(child, "reconfigService", None)
            if reconfig is not None:
                reconfig(config, settings)
        log.info("reloaded configuration{notes}", notes="".join("; " + n for n in notes))
        return notes

    @defer.inlineCallbacks
    def set_setting(self, name: str, value: str):
        """Validate, store in tb_config and apply one global setting at once."""
        try:
            settings = self.settings.with_value(name, value)
        except ValueError as e:
            raise CommandError(f"{name}: {e}") from None
        yield self.store.config.set(name, value)
        self.settings = settings
        log.info("setting {name} = {value}", name=name, value=value)
        return settings
