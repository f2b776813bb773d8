"""The root service: children start in order and wait for each other, stop in reverse."""

from twisted.application.service import Service
from twisted.internet import defer, task

from mizu.config import Config
from mizu.errors import CommandError, ConfigError, StoreError
from mizu.service import MizuService


class FakeConfigTable:
    def __init__(self, rows):
        self.rows = rows
        self.written = {}

    def load(self):
        return defer.succeed(dict(self.rows))

    def set(self, name, value):
        self.written[name] = value
        return defer.succeed(None)


class Child(Service):
    """A child whose start and stop fire when the test says so."""

    def __init__(self, name, events, rows=None):
        self.name = name
        self.events = events
        self.started = defer.Deferred()
        self.config = FakeConfigTable(rows or {})

    def startService(self):
        Service.startService(self)
        self.events.append(f"start {self.name}")
        return self.started

    def stopService(self):
        Service.stopService(self)
        self.events.append(f"stop {self.name}")


def tree(*names, rows=None, load=Config):
    events = []
    root = MizuService(Config(), load, task.Clock())
    children = [Child(name, events, rows) for name in names]
    for child in children:
        child.setServiceParent(root)
    return root, children, events


def test_children_start_one_after_another_and_ready_fires_last():
    """The console does not start before the store is ready; whenReady waits for all."""
    root, (store, console), events = tree("store", "console", rows={"ivrbilling": "5"})
    ready = root.whenReady()
    root.startService()
    assert events == ["start store"] and not ready.called
    store.started.callback(None)
    assert events == ["start store", "start console"] and not ready.called
    console.started.callback(None)
    assert ready.called and root.settings.ivrbilling == 5
    assert root.whenReady().called  # asking later gets the same outcome


def test_stop_in_reverse_order():
    """Stopping goes console first, store last."""
    root, children, events = tree("store", "console")
    root.startService()
    for child in children:
        child.started.callback(None)
    root.stopService()
    assert events[-2:] == ["stop console", "stop store"]


def test_a_failing_child_fails_readiness_and_later_children_never_start():
    """A store that cannot start fails whenReady with its reason."""
    root, (store, console), events = tree("store", "console")
    ready = root.whenReady()
    root.startService()
    store.started.errback(StoreError("cannot connect to database x"))
    assert events == ["start store"]
    failure = []
    ready.addErrback(failure.append)
    assert failure[0].check(StoreError)
    late = []
    root.whenReady().addErrback(late.append)
    assert late[0].check(StoreError)


def test_bad_settings_at_start_fail_readiness():
    """An invalid tb_config value at start fails the start, naming the row."""
    root, (store,), _ = tree("store", rows={"anumberhandling": "8"})
    ready = root.whenReady()
    root.startService()
    store.started.callback(None)
    failure = []
    ready.addErrback(failure.append)
    assert "tb_config anumberhandling" in str(failure[0].value)


def test_set_setting_validates_before_writing():
    """A refused value is never written; an accepted one is written and applied."""
    root, (store,), _ = tree("store")
    root.startService()
    store.started.callback(None)
    refused = []
    root.set_setting("ivrbilling", "7").addErrback(refused.append)
    assert refused[0].check(CommandError)
    assert str(refused[0].value) == "ivrbilling: expected one of 0, 1, 2, 5, got 7"
    assert store.config.written == {}
    root.set_setting("ivrbilling", "1")
    assert store.config.written == {"ivrbilling": "1"} and root.settings.ivrbilling == 1


def test_reload_refuses_everything_when_anything_is_wrong():
    """A config error and a tb_config error are reported together; nothing changes."""

    def broken():
        raise ConfigError(["[sip] workers: expected a whole number, got 'x'"])

    root, (store,), _ = tree("store", load=broken)
    root.startService()
    store.started.callback(None)
    store.config.rows = {"freeivraccess": "9"}
    failures = []
    root.reload().addErrback(failures.append)
    assert failures[0].value.errors == [
        "[sip] workers: expected a whole number, got 'x'",
        "tb_config freeivraccess: expected one of 0, 1, 2, 3, got 9"]
    assert root.settings.freeivraccess == 0
